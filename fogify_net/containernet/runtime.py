"""The deployment behind a running Containernet script: the API's own controller, in this process.

The document a script's topology makes is deployed exactly as an uploaded
compose file is (Controller.deploy: validation, the local backend, the
sampler, the scenarios), and while the script runs the REST API is served on
the port of FOGIFY_URL (loopback only), so the SDK, `fogify-net cli`,
`fogify-net action` and `fogify-net status` work on it from other terminals.
When that port is taken (an API daemon runs), the script still runs, without
the API, and says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from urllib.parse import urlparse

from mininet.log import warn

from ..backends.base import Backend, DeployError
from ..controller import Controller

log = logging.getLogger(__name__)


class Deployment:
    def __init__(self, data_dir: str, api: bool = True):
        # the script's author runs it as root on this machine: its volumes may bind host paths
        self.controller = Controller(data_dir=data_dir, allow_host_access=True)
        self.api = api
        self.api_url: str | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def emulation(self) -> Backend:
        return self.controller.emulation

    def start(self, text: str, timeout: float) -> None:
        """Deploy `text` (a fogified compose document) and wait until it runs; raise and clean up if not."""
        try:
            self.controller.deploy(text)
            deadline = time.monotonic() + timeout
            while self.controller.status == "deploying":
                if time.monotonic() > deadline:
                    raise DeployError(f"the deployment did not finish within {timeout:g}s")
                time.sleep(0.05)
            if self.controller.status not in ("running", "degraded"):
                raise DeployError(self.controller.message or self.controller.status)
        except BaseException:
            self.controller.close()
            raise
        if self.api:
            self._serve()

    def _serve(self) -> None:
        from fogify_net_api.app import create_app

        from ..host.wsgi import wsgi_server

        url = urlparse(os.environ.get("FOGIFY_URL", "http://127.0.0.1:5000"))
        port = url.port or 5000
        try:  # waitress within the bounds the API daemon has (host/wsgi.py)
            self._server = wsgi_server(create_app(self.controller), "127.0.0.1", port, name="fogify-net")
        except OSError as why:
            warn(f"*** the REST API of this run is not served: 127.0.0.1:{port} is taken ({why.strerror}); "
                 "stop the API daemon (fogify-net undeploy) to reach this run with the SDK and the CLI\n")
            return
        self.api_url = f"http://127.0.0.1:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, name="containernet-api", daemon=True)
        self._thread.start()

    def act(self, kind: str, params: dict) -> dict:
        """An action, as POST /actions/<kind>/ runs it (annotated, through the Backend contract)."""
        return self.controller.act(kind, params)

    def summary(self) -> str:
        emulation = self.emulation
        text = f"{len(emulation.plan.instances)} containers, {emulation.mechanism} shaping"
        return text + (f", REST API on {self.api_url}" if self.api_url else "")

    def stop(self) -> None:
        """Undeploy (nothing of it is left), then stop the API and the controller's threads."""
        try:
            if self.controller.status not in ("idle", "error"):
                self.controller.undeploy(wait=True)
            if self.controller.status == "error":
                raise DeployError(self.controller.message)
        finally:
            if self._server is not None:
                from ..host.wsgi import stop

                stop(self._server)
                if self._thread is not None:
                    self._thread.join(5)
                self._server = self._thread = None
            self.controller.close()
