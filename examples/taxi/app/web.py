"""The HTTP side shared by all roles: app factory, JSON errors, record payloads, the server.

Every role answers `GET /health` (is it up, who is it) and `GET /stats` (its
metrics as JSON, the same numbers as /fogify/metrics), so tests and users can
look inside an instance without reading its files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from metrics import Metrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_RECORDS_PER_POST = 10000


@dataclass
class Role:
    """What a role adds to the common process: its numbers, routes, background workers, identity.

    A worker is a callable taking the process's stop event; it returns when the event is set.
    """

    metrics: Metrics
    blueprint: Blueprint | None = None
    workers: list[Callable[[threading.Event], None]] = field(default_factory=list)
    identity: dict = field(default_factory=dict)


def create_app(identity: dict, stats: Callable[[], dict], blueprint: Blueprint | None = None) -> Flask:
    """A Flask app with /health, /stats, JSON errors and the role's own routes."""
    app = Flask(f"taxi-{identity.get('role', 'app').lower()}")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", **identity})

    @app.get("/stats")
    def get_stats():
        return jsonify(stats())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify({"message": exc.description}), exc.code

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"message": f"internal error: {type(exc).__name__}"}), 500

    if blueprint is not None:
        app.register_blueprint(blueprint)
    return app


def read_payload() -> dict:
    """The body of a records POST: {"source": "car"|"edge", "sender": str, "records": [{...}, ...]}."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise BadRequest("expected a JSON object with a 'records' list")
    records = payload.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest("'records' must be a list of JSON objects")
    if len(records) > MAX_RECORDS_PER_POST:
        raise BadRequest(f"at most {MAX_RECORDS_PER_POST} records per request, got {len(records)}")
    return payload


class _Handler(WSGIRequestHandler):
    # Close a connection idle this long: a car removed by scale-in vanishes without
    # closing its keep-alive connection, which would hold a server thread forever.
    timeout = 60


class Server:
    """Werkzeug's threaded server on its own thread, stoppable from the main thread.

    Threaded so that keep-alive connections from several cars do not queue
    behind each other; one thread per open connection, and idle ones close.
    """

    def __init__(self, app: Flask, host: str, port: int):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server = make_server(host, port, app, threaded=True, request_handler=_Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
