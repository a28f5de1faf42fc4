"""/monitorings/, /annotations/ and /packets/ in Fogify's shapes."""

from __future__ import annotations

import math

from flask import Blueprint, jsonify, request

from fogify_net.compile.flows import PROTOCOLS
from fogify_net.errors import BadRequest, NotFound
from fogify_net.model.errors import shown

from . import controller

bp = Blueprint("monitoring", __name__)


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
    """{instance: [records]}; `from_timestamp`/`to_timestamp` (epoch seconds, exclusive) and `service` filter."""
    c = controller()
    service = request.args.get("service") or None
    data = c.store.records(service, _timestamp("from_timestamp"), _timestamp("to_timestamp"))
    if service and service not in data:
        current = c.emulation.plan.instance(service) if c.emulation else None
        if current is None and not c.store.records(service):
            raise NotFound(f"service: no instance {shown(service)} and no metrics recorded for it")
        data[service] = []
    return jsonify(data)


@bp.delete("/monitorings/")
def clear_records():
    controller().store.clear_records()
    return jsonify(message="The metrics are empty now")


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
    rows = c.store.packets(service, _timestamp("from_timestamp"), _timestamp("to_timestamp"), protocol)
    if service and not rows and not _known(c, service):
        raise NotFound(f"service: no label or instance {shown(service)} deployed, and no packets recorded for it")
    return jsonify(res=rows)


def _known(c, service: str) -> bool:
    plan = c.emulation.plan if c.emulation else None
    return plan is not None and (plan.instance(service) is not None or service in plan.replicas())


@bp.delete("/packets/")
def clear_packets():
    controller().store.clear_packets()
    return jsonify(message="The packets are empty now")
