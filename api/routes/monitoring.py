"""/monitorings/, /annotations/ and /packets/ in Fogify's shapes, and /fidelity/ (fogify-net's)."""

from __future__ import annotations

import math

from flask import Blueprint, jsonify, request

from fogify_net.compile.flows import PROTOCOLS
from fogify_net.errors import BadRequest, NotFound
from fogify_net.model.errors import shown

from . import controller

bp = Blueprint("monitoring", __name__)

# Paging: an answer holds at most `limit` stored records (packets: flow rows), DEFAULT_LIMIT unless asked,
# which is more than an hour of 20 instances, so Fogify's SDK gets whole answers as before. When more
# match, the header X-Fogify-Next carries the `after` of the next page.
DEFAULT_LIMIT = 100_000
MAX_LIMIT = 1_000_000
NEXT_HEADER = "X-Fogify-Next"


def _whole(name: str, default: int | None, maximum: int) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return default
    if not value.isdigit() or int(value) > maximum or (name == "limit" and int(value) == 0):
        raise BadRequest(f"{name}: expected a whole number from {int(name == 'limit')} to {maximum}, "
                         f"got {shown(value)}")
    return int(value)


def _paged(body, following: int | None):
    response = jsonify(body)
    if following is not None:
        response.headers[NEXT_HEADER] = str(following)
    return response


def _timestamp(name: str) -> float | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name}: expected epoch seconds, got {shown(value)}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name}: expected epoch seconds, got {shown(value)}")
    return number


@bp.get("/monitorings/")
def records():
    """{instance: [records]}; `from_timestamp`/`to_timestamp` (epoch seconds, exclusive) and `service` filter;
    `limit` and `after` page (see DEFAULT_LIMIT)."""
    c = controller()
    service = request.args.get("service") or None
    data, following = c.store.records_page(service, _timestamp("from_timestamp"), _timestamp("to_timestamp"),
                                           _whole("limit", DEFAULT_LIMIT, MAX_LIMIT), _whole("after", None, 2**62))
    if service and service not in data:
        current = c.emulation.plan.instance(service) if c.emulation else None
        if current is None and not c.store.records_page(service, limit=1)[0]:
            raise NotFound(f"service: no instance {shown(service)} and no metrics recorded for it")
        data[service] = []
    return _paged(data, following)


@bp.delete("/monitorings/")
def clear_records():
    controller().store.clear_records()
    return jsonify(message="The metrics are empty now")


@bp.get("/fidelity/")
def fidelity():
    """{fidelity: ok|degraded|unknown, reasons, thresholds, episodes}; `from_timestamp`/`to_timestamp`
    (epoch seconds) keep the episodes overlapping that window, `instance` those that marked it."""
    c = controller()
    instance = request.args.get("instance") or None
    return jsonify(c.fidelity_report(_timestamp("from_timestamp"), _timestamp("to_timestamp"), instance))


@bp.get("/annotations/")
def annotations():
    return jsonify(controller().store.annotations())


@bp.delete("/annotations/")
def clear_annotations():
    controller().store.clear_annotations()
    return jsonify(message="Annotations are clear")


@bp.get("/packets/")
def packets():
    """{"res": [flow rows]} of networks with packet_level_monitoring; `service` (label or instance),
    `from_timestamp`/`to_timestamp` and `packet_type` (tcp, udp, icmp) filter."""
    c = controller()
    service = request.args.get("service") or None
    protocol = (request.args.get("packet_type") or "").lower() or None
    if protocol is not None and protocol not in PROTOCOLS:
        raise BadRequest(f"packet_type: expected one of {', '.join(PROTOCOLS)}, got {shown(protocol)}")
    rows, following = c.store.packets_page(service, _timestamp("from_timestamp"), _timestamp("to_timestamp"),
                                           protocol, _whole("limit", DEFAULT_LIMIT, MAX_LIMIT),
                                           _whole("after", None, 2**62))
    if service and not rows and following is None and not _known(c, service):
        raise NotFound(f"service: no label or instance {shown(service)} deployed, and no packets recorded for it")
    return _paged({"res": rows}, following)


def _known(c, service: str) -> bool:
    plan = c.emulation.plan if c.emulation else None
    return plan is not None and (plan.instance(service) is not None or service in plan.replicas())


@bp.delete("/packets/")
def clear_packets():
    controller().store.clear_packets()
    return jsonify(message="The packets are empty now")
