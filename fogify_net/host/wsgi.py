"""Serving a WSGI app (the REST API, a Swarm node's agent) with waitress, within fixed bounds.

Werkzeug's development server started a thread per connection without limit
and never timed a socket out: a few hundred idle or trickling connections
held the API. waitress reads requests asynchronously (a slow client holds a
connection slot, not a thread), answers them from a fixed pool of threads,
closes connections idle for CHANNEL_TIMEOUT_S, stops accepting past
CONNECTION_LIMIT connections and refuses bodies and headers past their sizes
before the app sees them.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from waitress.server import create_server

log = logging.getLogger(__name__)

THREADS = 8  # requests answered at once; more wait in waitress's queue (a `command` with wait holds one)
CONNECTION_LIMIT = 100  # open connections; waitress stops accepting new ones beyond
CHANNEL_TIMEOUT_S = 60  # a connection with no request in progress and no traffic for this long is closed
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 2**20  # a model upload or an action's body


def wsgi_server(app: Callable, host: str, port: int, threads: int = THREADS, name: str = "fogify-net",
                channel_timeout: int = CHANNEL_TIMEOUT_S) -> Any:
    """A bound, not yet serving, waitress server for `app`; its port is `server.effective_port`."""
    return create_server(
        app, host=host, port=port, threads=threads, connection_limit=CONNECTION_LIMIT,
        channel_timeout=channel_timeout, cleanup_interval=min(10, channel_timeout),
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=MAX_BODY_BYTES, ident=name, expose_tracebacks=False,
        clear_untrusted_proxy_headers=True,
    )


def serve_until_signal(server: Any) -> None:
    """Serve until SIGTERM or SIGINT (in the main thread), or until `stop(server)` from another thread.

    The first signal's handler raises SystemExit inside waitress's loop, which
    then stops taking requests, lets those in progress finish and returns; later
    signals are logged only, so the caller's teardown (an undeploy) runs to its end.
    """
    if threading.current_thread() is threading.main_thread():
        stopping = threading.Event()

        def shutdown(signum, _frame) -> None:
            if stopping.is_set():  # a second signal must not cut short what the first one started
                log.info("signal %d: already shutting down", signum)
                return
            stopping.set()
            log.info("signal %d: shutting down", signum)
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
    server.run()


def stop(server: Any) -> None:
    """End `server.run()` from another thread (tests; the serving thread returns within a second)."""
    server.task_dispatcher.shutdown(timeout=5)
    server.close()
