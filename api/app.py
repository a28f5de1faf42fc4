"""The Flask application: an app factory, one blueprint per resource, JSON errors from one place."""

from __future__ import annotations

import logging
import traceback

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from fogify_net.controller import Controller
from fogify_net.errors import FogifyError
from fogify_net.host.tokens import bearer_matches
from fogify_net.model import ModelError

from .routes import actions, distributions, monitoring, scenarios, status, topology

log = logging.getLogger(__name__)

# Fogify's routes we leave out on purpose, and why (a client that calls one learns it from the 404).
LEFT_OUT = {
    "/control/": "fogify-net leaves out Fogify's /control/ routes on purpose: /control/controller-properties/ "
                 "handed out the Swarm join token without authentication, and /control/<labels>/ was for "
                 "agents to ask for link rules again, which fogify-net applies itself whenever an instance starts",
}


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "controller")  # `controller`: the getting-started guide's name
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


def create_app(controller: Controller, token: str | None = None, host: str = "127.0.0.1",
               names: tuple[str, ...] = ()) -> Flask:
    """The API for `controller`. With a `token`, every request must carry `Authorization: Bearer <token>`.

    Without a token (loopback), a request must name this API in its Host header
    (the address it listens on, a loopback name, `controller`, or one of `names`):
    a web page whose own name resolves to 127.0.0.1 (DNS rebinding) is refused.
    A state-changing request that carries an `Origin` must come from this API's own
    origin: a browser sends one on every cross-site POST, the SDKs and the CLI none.
    """
    app = Flask(__name__)
    app.config["CONTROLLER"] = controller
    app.config["MAX_CONTENT_LENGTH"] = 16 * 2**20
    app.json.sort_keys = False
    for blueprint in (topology.bp, monitoring.bp, actions.bp, scenarios.bp, status.bp, distributions.bp):
        app.register_blueprint(blueprint)

    allowed = {name.lower().strip("[]") for name in (*LOOPBACK_NAMES, host, *names)}

    @app.before_request
    def same_origin():
        asked = _hostname(request.host)
        if not token and asked not in allowed:
            return jsonify(message=f"Host {request.host!r} is not this API's name; use one of "
                                   f"{', '.join(sorted(allowed))} (or start it with --name)"), 403
        origin = request.headers.get("Origin")
        if origin is not None and request.method in STATE_CHANGING and origin != f"{request.scheme}://{request.host}":
            return jsonify(message=f"cross-origin {request.method} refused (Origin {origin!r}): web pages "
                                   "cannot drive the API"), 403
        return None

    if token:
        @app.before_request
        def authenticate():
            if not bearer_matches(request.headers.get("Authorization"), token):
                return jsonify(message="missing or wrong bearer token (Authorization: Bearer <token>)"), 401
            return None

    @app.errorhandler(ModelError)
    def model_error(error: ModelError):
        return jsonify(message=str(error), field=error.path), 400

    @app.errorhandler(RecursionError)
    def too_deep(error: RecursionError):  # a JSON body nested thousands of levels deep
        return jsonify(message="the request body nests too deeply"), 400

    @app.errorhandler(FogifyError)
    def fogify_error(error: FogifyError):
        return jsonify(message=str(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 404:
            for prefix, reason in LEFT_OUT.items():
                if request.path.rstrip("/") + "/" == prefix or request.path.startswith(prefix):
                    return jsonify(message=reason), 404
        return jsonify(message=error.description or error.name), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.error("unexpected error on %s %s:\n%s", request.method, request.path, traceback.format_exc())
        return jsonify(message=f"internal error: {error}"), 500

    return app


def _hostname(host_header: str) -> str:
    """The name of a Host header without its port: `localhost:5000` -> localhost, `[::1]:5000` -> ::1."""
    host_header = host_header.strip().lower()
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
