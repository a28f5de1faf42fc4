"""The agent's HTTP server: JSON in (wire.py), JSON out, errors as {"message": ...}."""

from __future__ import annotations

import logging
from typing import Any

from ....compile.flows import flows_to_json
from ....host.cleanup import remove_swarm_leftovers
from ....host.kernel import KernelError
from ....host.tokens import bearer_matches
from ..wire import (
    EventsRequest,
    ExecRequest,
    FidelityRequest,
    FlowsRequest,
    LinkRequest,
    ResourcesRequest,
    SampleRequest,
    StressRequest,
    TaskShaping,
    distributions_from_json,
    docker_id,
    filter_from_json,
    readings_to_json,
)
from .worker import Agent

log = logging.getLogger(__name__)


def create_app(agent: Agent, token: str):
    """The agent's Flask app: JSON in, JSON out, errors as {"message": ...}. Every request carries
    `Authorization: Bearer <token>`, also on loopback (another user of the node could call it)."""
    from flask import Flask, jsonify, request

    if not token:
        raise ValueError("the agent needs a token")

    app = Flask("fogify-net-agent")

    @app.before_request
    def authorise() -> Any:
        if not bearer_matches(request.headers.get("Authorization"), token):
            return jsonify(message="missing or wrong bearer token"), 401
        return None

    @app.errorhandler(Exception)
    def error(exc: Exception) -> Any:
        status = (403 if isinstance(exc, PermissionError) else 400 if isinstance(exc, (KeyError, ValueError, TypeError))
                  else 404 if isinstance(exc, LookupError) else 500)  # (a KeyError is a LookupError too)
        if not isinstance(exc, (PermissionError, LookupError, KeyError, ValueError, TypeError, KernelError)):
            log.exception("agent request failed")
        return jsonify(message=f"{type(exc).__name__}: {exc}"), status

    @app.get("/health/")
    def health() -> Any:
        return jsonify(agent.info())

    @app.post("/shape/")
    def shape() -> Any:
        body = request.get_json()
        return jsonify(applied=agent.shape([TaskShaping.from_json(t) for t in body["tasks"]],
                                           [filter_from_json(f) for f in body.get("filters") or []],
                                           distributions_from_json(body.get("distributions"))))

    @app.post("/samples/")
    def samples() -> Any:
        wanted = request.get_json()["containers"]
        return jsonify(agent.samples({docker_id(cid): SampleRequest.from_json(raw) for cid, raw in wanted.items()}))

    @app.post("/fidelity/")
    def fidelity() -> Any:
        return jsonify(readings_to_json(agent.fidelity(FidelityRequest.from_json(request.get_json()))))

    @app.post("/flows/")
    def flows() -> Any:
        return jsonify(flows=flows_to_json(agent.flows(FlowsRequest.from_json(request.get_json()))))

    @app.post("/forget/")
    def forget() -> Any:
        agent.forget([docker_id(c) for c in request.get_json()["containers"]])
        return jsonify(message="OK")

    @app.post("/events/")
    def events() -> Any:
        return jsonify(agent.events.poll(EventsRequest.from_json(request.get_json())))

    @app.post("/link/")
    def link() -> Any:
        agent.link(LinkRequest.from_json(request.get_json()))
        return jsonify(message="OK")

    @app.post("/exec/")
    def execute() -> Any:
        return jsonify(agent.exec(ExecRequest.from_json(request.get_json())))

    @app.post("/resources/")
    def resources() -> Any:
        agent.resources(ResourcesRequest.from_json(request.get_json()))
        return jsonify(message="OK")

    @app.post("/stress/")
    def stress() -> Any:
        return jsonify(commands=agent.start_stress(StressRequest.from_json(request.get_json())))

    @app.delete("/stress/")
    def stop_stress() -> Any:
        agent.stress.stop_all()
        return jsonify(message="OK")

    return app


def serve(docker_url: str | None, host: str, port: int, token: str,
          run_dir: str = "/run/fogify-net", exec_root: str = "/var/run/docker") -> None:
    """Run the agent until SIGTERM or SIGINT (waitress, bounded as the API: fogify_net.host.wsgi; several
    threads, so shaping one task does not block a health check)."""
    from ....host.wsgi import serve_until_signal, wsgi_server

    agent = Agent(docker_url, run_dir, exec_root)
    for line in remove_swarm_leftovers(run_dir, exec_root):  # an earlier agent's, killed (SIGKILL, a crash)
        log.warning("removed what an earlier agent left: %s", line)
    agent.events.start()
    # a controller's /events/ poll holds one thread while it waits: the others answer the rest
    server = wsgi_server(create_app(agent, token), host, port, threads=6, name="fogify-net-agent")
    log.info("agent for %s listening on %s:%d", docker_url or "the local dockerd", host, port)
    try:
        serve_until_signal(server)
    finally:
        agent.stop()
        server.close()
