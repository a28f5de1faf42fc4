"""Bringing the model up and down: deploy, undeploy, and the progress and state they wait on.

Deploy and undeploy poll ``GET /topology/`` behind a tqdm bar on a monotonic
clock; ``info`` and ``status`` hand the API's own answers back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tqdm import tqdm

from ._errors import ExceptionFogifySDK
from ._http import (
    ANNOTATIONS_URL,
    DISTRIBUTION_URL,
    MONITORING_URL,
    STATUS_URL,
    TOPOLOGY_URL,
    decode_json,
    is_ok,
)
from ._metrics import MetricsMixin
from ._model import ModelMixin

logger = logging.getLogger("FogifySDK")

_SERVICE_PREFIX = "fogify_"


def instance_names(topology: dict) -> dict[str, list[str]]:
    """``{label: [<label>.<slot>, ...]}`` of the running tasks in a ``GET /topology/`` answer."""
    names: dict[str, list[str]] = {}
    for service, tasks in (topology or {}).items():
        label = service.removeprefix(_SERVICE_PREFIX)
        running = [t for t in tasks if isinstance(t, dict) and (t.get("Status") or {}).get("State") == "running"]
        if running:
            names[label] = [f"{label}.{t['Slot']}" for t in sorted(running, key=lambda t: t.get("Slot", 0))]
    return names

_DEPLOYMENT_ACTIVE = ("deploying", "running", "degraded", "undeploying")


class DeploymentMixin(ModelMixin, MetricsMixin):
    """deploy/undeploy (uploading the model, clearing the metrics of a finished run), info, status, and
    deploy_network_distribution (a custom delay distribution from a ping trace)."""

    def deploy(self, timeout: float = 120, undeploy_on_timeout: bool = True) -> dict:
        """Upload the model, start it, and wait until every instance runs.

        Metrics and annotations of a previous run are cleared first, unless the
        API reports a deployment that still runs (the API then refuses this one,
        and that run's data must survive the refusal). The bar
        counts instances the API lists in ``GET /topology/`` (polled every
        second); the wait also lasts while the API reports ``deploying`` so that
        shaping is in place when this returns. A failed deployment raises with the
        API's message. After ``timeout`` seconds it raises too and, unless
        ``undeploy_on_timeout`` is False, asks the API to remove what was started.
        Without a compose file the API redeploys the model it received last.
        """
        if not self._deployment_active():
            self._clean_quietly(MONITORING_URL)
            self._clean_quietly(ANNOTATIONS_URL)
            self.data = {}
        answer = self._post_model(timeout)
        if not is_ok(answer):
            raise ExceptionFogifySDK(f"The deployment is failed ({answer})", payload=answer)
        planned = self._planned_replicas(answer)
        total = sum(planned.values())
        deadline = time.monotonic() + timeout
        with tqdm(total=total, desc="Deploy process") as bar:
            finished, count, status = self._wait_topology(
                bar, deadline, "deployment",
                done=lambda n, state: n >= total and state not in ("deploying",))
        if not finished:
            self._on_deploy_timeout(undeploy_on_timeout)
            raise ExceptionFogifySDK(
                f"The deployment did not finish within {timeout} s: {count} of {total} instances are up"
                f" (API status: {status or 'unknown'})")
        if status == "degraded":
            logger.warning("The deployment finished degraded; see status() for details")
        return {"message": f"The services are deployed ( {planned} )"}

    def _deployment_active(self) -> bool:
        """True when ``GET /status/`` reports a deployment; False when it cannot tell (Fogify has no such route)."""
        try:
            answer = self._call("GET", STATUS_URL)
        except ExceptionFogifySDK as error:
            if error.status_code is None:
                raise
            return False
        return isinstance(answer, dict) and answer.get("status") in _DEPLOYMENT_ACTIVE

    def _clean_quietly(self, path: str) -> None:
        """Clearing old data before a deploy is a courtesy; an API that refuses must not stop it."""
        try:
            self._call("DELETE", path)
        except ExceptionFogifySDK as error:
            if error.status_code is None:
                raise
            logger.warning("Could not clear %s before deploying: %s", path, error)

    def _post_model(self, timeout: float) -> Any:
        read_timeout = max(self.http_timeout, timeout)
        if self.docker_compose is None:
            return self._call("POST", TOPOLOGY_URL, timeout=read_timeout)
        traces = [("traces", (name, data)) for name, data in self.trace_files().items()]
        with self.upload_file() as handle:
            return self._call("POST", TOPOLOGY_URL, files=[("file", handle), *traces], timeout=read_timeout)

    def _planned_replicas(self, answer: dict) -> dict:
        """Replicas per service from the deploy answer (Fogify's ``swarm`` dict), else from the model."""
        services = (answer.get("swarm") or {}).get("services") or {}
        planned = {}
        for name, service in services.items():
            replicas = ((service or {}).get("deploy") or {}).get("replicas", 1)
            planned[name] = int(replicas)
        if not planned:
            planned = {b.get("label"): int(b.get("replicas", 1)) for b in self.topology}
        return planned

    def _on_deploy_timeout(self, undeploy: bool) -> None:
        if not undeploy:
            return
        try:
            self._call("DELETE", TOPOLOGY_URL)
        except ExceptionFogifySDK as error:
            logger.warning("Could not remove the unfinished deployment: %s", error)

    def undeploy(self, timeout: float = 120) -> dict:
        """Remove the deployment and wait until no instance is left (bar counts them down)."""
        self._call("DELETE", TOPOLOGY_URL)
        count, status, _ = self._topology_progress("undeployment")
        total = count
        deadline = time.monotonic() + timeout
        with tqdm(total=total, desc="Undeploy process") as bar:
            finished, count, status = self._wait_topology(
                bar, deadline, "undeployment", countdown=total,
                done=lambda n, state: n == 0 and state not in ("undeploying",))
        self.data = {}
        if not finished:
            raise ExceptionFogifySDK(
                f"The undeployment did not finish within {timeout} s: {count} instances remain"
                f" (API status: {status or 'unknown'})")
        return {"message": f"The {total} services are undeployed"}

    def _wait_topology(self, bar: tqdm, deadline: float, phase: str,
                       done: Callable[[int, str | None], bool],
                       countdown: int | None = None) -> tuple[bool, int, str | None]:
        """Poll ``GET /topology/`` until ``done(count, status)`` or the deadline (monotonic clock).

        The bar shows instances up (or, with ``countdown``, instances removed).
        Returns (finished, last count, last API status).
        """
        while True:
            count, status, _ = self._topology_progress(phase)
            progress = count if countdown is None else countdown - count
            step = max(0, min(progress, bar.total)) - bar.n
            if step:
                bar.update(step)
            if done(count, status):
                return True, count, status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, count, status
            time.sleep(min(self.poll_interval, remaining))

    def _topology_progress(self, phase: str) -> tuple[int, str | None, str | None]:
        """(instances listed, X-Fogify-Status, X-Fogify-Message) of ``GET /topology/``.

        A non-200 answer, or the status ``error``, means the operation failed:
        raise with the API's message.
        """
        try:
            response = self._send("GET", TOPOLOGY_URL)
        except ExceptionFogifySDK as error:
            if error.status_code is None:
                raise
            raise ExceptionFogifySDK(f"The {phase} is failed: {error.message}",
                                     status_code=error.status_code, payload=error.payload) from None
        status = response.headers.get("X-Fogify-Status")
        message = response.headers.get("X-Fogify-Message")
        if status == "error":
            raise ExceptionFogifySDK(f"The {phase} is failed: {message or 'the API reports an error'}",
                                     status_code=response.status_code)
        body = decode_json(response) or {}
        count = sum(len(value) for value in body.values() if isinstance(value, (list, dict)))
        return count, status, message

    def deploy_network_distribution(self, name: str, file: Any) -> dict:
        """Make the custom delay distribution ``name`` on the API from a ping trace (Fogify's call).

        ``file`` is a path, an open file, or the trace's text or bytes: the output
        of ``ping`` (or one delay in ms a line). Returns the API's answer,
        ``{"generated-distribution": {"mu", "sigma", "rho", "samples"}}``; a model's
        latency can then name it: ``latency: {distribution: <name>}``.
        """
        if isinstance(file, (str, os.PathLike)) and not (isinstance(file, str) and "\n" in file):
            with open(file, "rb") as handle:
                content = handle.read()
        elif hasattr(file, "read"):
            content = file.read()
        else:
            content = file
        if isinstance(content, str):
            content = content.encode()
        return self._call("POST", f"{DISTRIBUTION_URL}{quote(name, safe='')}/",
                          files={"file": ("trace.txt", content)})

    def info(self) -> Any:
        """The API's ``GET /topology/`` answer, unchanged, as Fogify gives it on Swarm.

        ``{"fogify_<label>": [task, ...]}``, a task being Swarm's object: ``Slot``,
        ``Status.State``, ``Status.ContainerStatus.ContainerID`` (for ``docker exec``)
        and ``NetworksAttachments[k].Addresses[0]`` (``"10.0.1.5/24"``), in the order of
        the blueprint's networks.
        """
        return self._call("GET", TOPOLOGY_URL)

    def instances(self) -> dict[str, list[str]]:
        """Label -> names of its running instances (``<label>.<slot>``), read from ``info()``."""
        return instance_names(self.info())

    def status(self) -> dict:
        """The API's state: ``{status, message, shaping, instances: [...]}`` (fogify-net)."""
        return self._call("GET", STATUS_URL)
