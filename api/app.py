"""The Flask application: an app factory, one blueprint per resource, JSON errors from one place."""

from __future__ import annotations

import hmac
import logging
import traceback

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from fogify_net.controller import Controller
from fogify_net.errors import FogifyError
from fogify_net.model import ModelError

from .routes import actions, monitoring, scenarios, status, topology

log = logging.getLogger(__name__)


def create_app(controller: Controller, token: str | None = None) -> Flask:
    """The API for `controller`. With a `token`, every request must carry `Authorization: Bearer <token>`."""
    app = Flask(__name__)
    app.config["CONTROLLER"] = controller
    app.config["MAX_CONTENT_LENGTH"] = 16 * 2**20
    app.json.sort_keys = False
    for blueprint in (topology.bp, monitoring.bp, actions.bp, scenarios.bp, status.bp):
        app.register_blueprint(blueprint)

    if token:
        @app.before_request
        def authenticate():
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return jsonify(message="missing or wrong bearer token (Authorization: Bearer <token>)"), 401
            return None

    @app.errorhandler(ModelError)
    def model_error(error: ModelError):
        return jsonify(message=str(error), field=error.path), 400

    @app.errorhandler(FogifyError)
    def fogify_error(error: FogifyError):
        return jsonify(message=str(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(message=error.description or error.name), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.error("unexpected error on %s %s:\n%s", request.method, request.path, traceback.format_exc())
        return jsonify(message=f"internal error: {error}"), 500

    return app
