"""Serving the API: a threaded WSGI server (no debug server, no reloader), stopped cleanly by a signal."""

from __future__ import annotations

import logging
import signal
import threading

from werkzeug.serving import make_server

from fogify_net.controller import Controller

from .app import create_app

log = logging.getLogger(__name__)


def serve(controller: Controller, host: str = "127.0.0.1", port: int = 5000, token: str | None = None,
          ready: threading.Event | None = None, names: tuple[str, ...] = ()) -> None:
    """Serve until SIGTERM or SIGINT, then undeploy whatever runs and return (after it is gone).

    `names`: more host names clients may use for this API (the Host header check).
    """
    server = make_server(host, port, create_app(controller, token, host=host, names=names), threaded=True)
    stop = threading.Event()

    def shutdown(signum, _frame) -> None:
        log.info("signal %d: shutting down", signum)
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
    log.info("fogify-net API on http://%s:%d/%s", host, server.server_port, " (bearer token required)" if token else "")
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    finally:
        controller.close()
        server.server_close()
