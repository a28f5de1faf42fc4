"""Serving the API: waitress with bounded threads, connections, timeouts and sizes (fogify_net.host.wsgi);
stopped cleanly by a signal, which undeploys whatever runs."""

from __future__ import annotations

import logging
import threading

from fogify_net.controller import Controller
from fogify_net.host.wsgi import serve_until_signal, wsgi_server

from .app import create_app

log = logging.getLogger(__name__)


def serve(controller: Controller, host: str = "127.0.0.1", port: int = 5000, token: str | None = None,
          ready: threading.Event | None = None, names: tuple[str, ...] = ()) -> None:
    """Serve until SIGTERM or SIGINT, then undeploy whatever runs and return (after it is gone).

    `names`: more host names clients may use for this API (the Host header check).
    """
    server = wsgi_server(create_app(controller, token, host=host, names=names), host, port, name="fogify-net")
    log.info("fogify-net API on http://%s:%d/%s", host, server.effective_port,
             " (bearer token required)" if token else "")
    if ready is not None:
        ready.set()
    try:
        serve_until_signal(server)
    finally:
        controller.close()
        server.close()
