"""The FogifySDK client: build a model, deploy it, act on it, read its metrics.

Same calls, arguments and return shapes as Fogify's SDK, so its notebooks run
unchanged, with its bugs fixed (see README.md) and calls for what fogify-net
adds (status, server-side scenarios, faults, command results, effect()).
The module keeps Fogify's name so ``from FogifySDK.FogifySDK import ...`` works too.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pandas as pd
import requests
import yaml
from tqdm import tqdm

from ._actions import ACTION_PATHS, Action_type, parse_action_type
from ._effect import action_annotations, effect_table
from ._errors import ExceptionFogifySDK
from ._frames import (
    annotations_frame,
    metrics_frame,
    naive_utc,
    per_second,
    record_key,
    record_time,
    sort_records,
    to_epoch,
    to_timedelta,
    utc_now,
)
from ._http import decode_json, is_ok, normalise_base_url, server_message
from ._scenarios import PlannedAction, plan_scenario, select_scenario

__all__ = ["Action_type", "ExceptionFogifySDK", "FogifySDK"]

logger = logging.getLogger("FogifySDK")

FOGIFY_FILE = "fogified-docker-compose.yaml"
TOPOLOGY_URL = "/topology/"
MONITORING_URL = "/monitorings/"
ANNOTATIONS_URL = "/annotations/"
PACKETS_URL = "/packets/"
STATUS_URL = "/status/"
SCENARIOS_URL = "/scenarios/"

TimeLike = "datetime | pd.Timestamp | float | int | str"  # a type alias for hints only
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
_SCENARIO_DONE = ("finished", "cancelled", "failed")
_DEPLOYMENT_ACTIVE = ("deploying", "running", "degraded", "undeploying")


class FogifySDK:
    """A client of one fogify-net (or Fogify) API, optionally holding a model.

    ``url`` is the API's address (``http://host:5000``, ``https://...`` or bare
    ``host:5000``). ``docker_compose`` is a compose file with an ``x-fogify``
    section; the model builders edit it before :meth:`deploy`. ``token`` (or the
    environment variable ``FOGIFY_TOKEN``) is sent as ``Authorization: Bearer``,
    which the API asks for when it listens beyond 127.0.0.1.
    """

    Action_type = Action_type
    logger = logger

    poll_interval: float = 1.0  # seconds between progress polls
    http_timeout: float = 60.0  # seconds to wait for one answer (reads), unless a call needs longer

    def __init__(self, url: str, docker_compose: str | None = None, token: str | None = None):
        self.url = url
        # strip: a token copied from `vagrant ssh -c` or a file often ends in "\r\n"
        self.token = (token if token is not None else os.environ.get("FOGIFY_TOKEN", "")).strip() or None
        self.docker_compose: str | None = None
        self.docker_swarm_rep: dict | None = None
        self.nodes: list = []
        self.networks: list = []
        self.topology: list = []
        self.scenarios: list = []
        self.services: list = []
        self.data: dict = {}
        self.annotations: pd.DataFrame = annotations_frame([])
        self.fogify_yaml = None
        self._session = requests.Session()
        if docker_compose:
            try:
                with open(docker_compose, "r") as handle:
                    self.docker_compose = handle.read()
            except FileNotFoundError:
                raise ExceptionFogifySDK("No such file or directory: " + docker_compose) from None
            self.parse_docker_swarm()

    # ------------------------------------------------------------------ HTTP

    def get_url(self, path: str = "") -> str:
        """The absolute URL of ``path`` on the API (bare ``host:port`` means ``http://``)."""
        try:
            return normalise_base_url(self.url) + path
        except ValueError as error:
            raise ExceptionFogifySDK(str(error)) from None

    def _send(self, method: str, path: str, *, timeout: float | None = -1.0,
              headers: dict | None = None, **kwargs: Any) -> requests.Response:
        """One request; any failure becomes an ExceptionFogifySDK with the server's message.

        ``timeout=-1`` means :attr:`http_timeout`; None waits as long as the server takes.
        """
        url = self.get_url(path)
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        read_timeout = self.http_timeout if timeout == -1.0 else timeout
        try:
            response = self._session.request(method, url, headers=all_headers,
                                             timeout=(10.0, read_timeout), **kwargs)
        except requests.RequestException as error:
            raise ExceptionFogifySDK(f"Cannot reach the Fogify API at {url}: {error}") from None
        if response.status_code >= 400:
            raise ExceptionFogifySDK(server_message(response), status_code=response.status_code,
                                     payload=decode_json(response),
                                     context=f"HTTP {response.status_code}, {method} {path}")
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose answer must be JSON; Fogify's ``{"Error": ...}`` answers raise too."""
        response = self._send(method, path, **kwargs)
        body = decode_json(response)
        if body is None and response.content:
            raise ExceptionFogifySDK(f"The API answered {method} {path} with something that is not JSON",
                                     status_code=response.status_code)
        if isinstance(body, dict) and "Error" in body and "message" not in body:
            raise ExceptionFogifySDK(str(body["Error"]), status_code=response.status_code, payload=body,
                                     context=f"{method} {path}")
        return body

    # ----------------------------------------------------------------- model

    def check_docker_swarm_existence(self) -> None:
        """Model builders need a compose file to extend."""
        if self.docker_compose is None:
            raise ExceptionFogifySDK("You can not apply this functionality with fogify yaml")

    def parse_docker_swarm(self) -> None:
        """Read the compose text into ``docker_swarm_rep`` and the model lists."""
        self.check_docker_swarm_existence()
        try:
            self.docker_swarm_rep = yaml.safe_load(self.docker_compose) or {}
        except yaml.YAMLError as error:
            raise ExceptionFogifySDK(f"The docker-compose file is not valid YAML: {error}") from None
        if not isinstance(self.docker_swarm_rep, dict) or "services" not in self.docker_swarm_rep:
            raise ExceptionFogifySDK("The docker-compose should have at least services")
        model = self.docker_swarm_rep.get("x-fogify") or {}
        self.networks = list(model.get("networks") or [])
        self.nodes = list(model.get("nodes") or [])
        self.scenarios = list(model.get("scenarios") or [])
        self.topology = list(model.get("topology") or [])
        self.services = list(self.docker_swarm_rep["services"] or [])

    def upload_file(self, remove_file: bool = True):
        """Write the current model to ``fogified-docker-compose.yaml`` and return it opened (binary).

        The file holds the compose services plus ``x-fogify`` with the builders'
        nodes, networks and topology, and the scenarios (fogify-net runs them
        server-side, so unlike Fogify they are uploaded too). Other ``x-fogify``
        keys of the original file are kept. With ``remove_file`` the path is
        deleted at once and only the open handle remains.
        """
        self.check_docker_swarm_existence()
        model = dict(self.docker_swarm_rep.get("x-fogify") or {})
        model.update(networks=self.networks, topology=self.topology, nodes=self.nodes)
        if self.scenarios:
            model["scenarios"] = self.scenarios
        else:
            model.pop("scenarios", None)
        self.docker_swarm_rep["x-fogify"] = model
        with open(FOGIFY_FILE, "w") as handle:
            yaml.safe_dump(self.docker_swarm_rep, handle, sort_keys=False)
        if self.fogify_yaml is not None and not self.fogify_yaml.closed:
            self.fogify_yaml.close()
        self.fogify_yaml = open(FOGIFY_FILE, "rb")  # noqa: SIM115 - returned open, as Fogify did
        if remove_file:
            os.remove(FOGIFY_FILE)
        return self.fogify_yaml

    def add_node(self, name: str, cpu_cores: int, cpu_freq: int, memory: str, disk: str = "") -> None:
        """Add a node profile (cores, clock speed in MHz, memory like ``"2G"``)."""
        self.check_docker_swarm_existence()
        if any(node.get("name") == name for node in self.nodes):
            raise ExceptionFogifySDK("The device already exists")
        self.nodes.append({
            "name": name,
            "capabilities": {
                "processor": {"cores": int(cpu_cores), "clock_speed": int(cpu_freq)},
                "memory": memory,
                "disk": disk,
            },
        })

    def add_network(self, name: str, uplink: dict, downlink: dict, capacity: int | None = None) -> None:
        """Add a network with different uplink and downlink characteristics."""
        self._check_new_network(name)
        self.networks.append({"name": name, "uplink": uplink, "downlink": downlink, "capacity": capacity})

    def add_bidirectional_network(self, name: str, bidirectional: dict, capacity: int | None = None) -> None:
        """Add a network with the same characteristics both ways."""
        self._check_new_network(name)
        self.networks.append({"name": name, "bidirectional": bidirectional, "capacity": capacity})

    def _check_new_network(self, name: str) -> None:
        self.check_docker_swarm_existence()
        if any(network.get("name") == name for network in self.networks):
            raise ExceptionFogifySDK("The network already exists")

    def add_link(self, network_name: str, from_node: str, to_node: str, parameters: dict,
                 bidirectional: bool = True) -> None:
        """Add a per-peer link to a network: ``parameters`` is ``{properties}`` or ``{uplink, downlink}``."""
        self.check_docker_swarm_existence()
        network = next((n for n in self.networks if n.get("name") == network_name), None)
        if network is None:
            raise ExceptionFogifySDK("The network does not exist")
        link = {"from_node": from_node, "to_node": to_node, "bidirectional": bidirectional}
        if "properties" in parameters:
            link["properties"] = parameters["properties"]
        elif "uplink" in parameters and "downlink" in parameters:
            link.update(uplink=parameters["uplink"], downlink=parameters["downlink"])
        else:
            raise ExceptionFogifySDK(
                "A link should either have 'properties' field or both 'uplink' and 'downlink' fields")
        network.setdefault("links", []).append(link)

    def add_topology_node(self, label: str, service: str, device: str, networks: list | None = None,
                          replicas: int = 1) -> None:
        """Add a blueprint: ``replicas`` instances of ``service`` on node profile ``device``."""
        self.check_docker_swarm_existence()
        networks = list(networks or [])
        if service not in self.services:
            raise ExceptionFogifySDK(f"There is no service with name {service} in swarm file.")
        if label in [blueprint.get("label") for blueprint in self.topology]:
            raise ExceptionFogifySDK(f"There is another topology node with {label} in your model.")
        if device not in [node.get("name") for node in self.nodes]:
            raise ExceptionFogifySDK(f"There is no device with name {device} in your model.")
        known = [network.get("name") for network in self.networks]
        for network in networks:
            name = network.get("name") if isinstance(network, dict) else network
            if name not in known:
                raise ExceptionFogifySDK(f"There is no network with name {name} in your model.")
        self.topology.append({"service": service, "node": device, "networks": networks,
                              "label": label, "replicas": replicas})

    # -------------------------------------------------------- deploy / status

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
        """True when the API's ``GET /status/`` reports a deployment; False when it cannot tell (Fogify has no such route)."""
        try:
            answer = self._call("GET", STATUS_URL)
        except ExceptionFogifySDK as error:
            if error.status_code is None:
                raise
            return False
        return isinstance(answer, dict) and answer.get("status") in _DEPLOYMENT_ACTIVE

    def _post_model(self, timeout: float) -> Any:
        read_timeout = max(self.http_timeout, timeout)
        if self.docker_compose is None:
            return self._call("POST", TOPOLOGY_URL, timeout=read_timeout)
        with self.upload_file() as handle:
            return self._call("POST", TOPOLOGY_URL, files={"file": handle}, timeout=read_timeout)

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

    def info(self) -> Any:
        """The API's ``GET /topology/`` answer, unchanged: ``{label: [instance, ...]}``."""
        return self._call("GET", TOPOLOGY_URL)

    def status(self) -> dict:
        """The API's state: ``{status, message, shaping, instances: [...]}`` (fogify-net)."""
        return self._call("GET", STATUS_URL)

    # --------------------------------------------------------------- metrics

    def get_metrics(self, service: str | None = None, from_timestamp: TimeLike | None = None,
                    to_timestamp: TimeLike | None = None) -> FogifySDK:
        """Fetch monitoring records into ``self.data`` ({instance: [records sorted by count]}).

        Times may be datetimes (naive ones are UTC, like the metrics index),
        pandas Timestamps or epoch seconds; the API takes whole seconds, so the
        window is widened to them. A plain call (no filter) replaces the cache;
        filtered calls merge into it without duplicates.
        """
        params = {}
        if from_timestamp is not None:
            params["from_timestamp"] = math.floor(to_epoch(from_timestamp))
        if to_timestamp is not None:
            params["to_timestamp"] = math.ceil(to_epoch(to_timestamp))
        if service:
            params["service"] = service
        answer = self._call("GET", MONITORING_URL, params=params) or {}
        if not isinstance(answer, dict):
            raise ExceptionFogifySDK(f"The API answered {MONITORING_URL} with {type(answer).__name__}, not a mapping")
        if not params:
            self.data = {}
        for instance, records in answer.items():
            self._merge_records(instance, records or [])
        return self

    def _merge_records(self, instance: str, records: list) -> None:
        cached = self.data.setdefault(instance, [])
        seen = {record_key(record) for record in cached}
        cached.extend(record for record in records if record_key(record) not in seen)
        sort_records(cached)

    def get_metrics_from(self, service: str) -> pd.DataFrame:
        """The metrics of one instance (``label.N``) as a DataFrame.

        Index ``timestamp`` (naive UTC, sub-second when the API sends ``ts``),
        columns ``count`` and each metric, sorted by ``count``. The first call
        fetches everything; later calls fetch only newer records.
        """
        cached = self.data.get(service)
        if cached:
            since = record_time(cached[-1]) - pd.Timedelta(milliseconds=100)
            self.get_metrics(service=service, from_timestamp=since)
        else:
            self.get_metrics(service=service)
        return metrics_frame(self.data.get(service, []))

    def clean_metrics(self) -> Any:
        """Delete all monitoring records, on the API and in the cache."""
        self.data = {}
        return self._call("DELETE", MONITORING_URL)

    def _clean_quietly(self, path: str) -> None:
        """Clearing old data before a deploy is a courtesy; an API that refuses must not stop it."""
        try:
            self._call("DELETE", path)
        except ExceptionFogifySDK as error:
            if error.status_code is None:
                raise
            logger.warning("Could not clear %s before deploying: %s", path, error)

    def get_network_packets_from(self, service: str, from_timestamp: TimeLike | None = None,
                                 to_timestamp: TimeLike | None = None,
                                 packet_type: str | None = None) -> pd.DataFrame:
        """Traffic per flow seen by ``service`` (a label or instance) as a DataFrame (``GET /packets/``).

        Rows exist for networks with ``packet_level_monitoring``: one per flow and
        period, with ``src_instance``, ``dest_instance``, ``protocol``, ports,
        ``count`` and ``size`` (IP bytes).
        """
        params: dict = {}
        if from_timestamp is not None:
            params["from_timestamp"] = math.floor(to_epoch(from_timestamp))
        if to_timestamp is not None:
            params["to_timestamp"] = math.ceil(to_epoch(to_timestamp))
        if packet_type:
            params["packet_type"] = str(packet_type)
        params["service"] = service
        answer = self._call("GET", PACKETS_URL, params=params)
        if not isinstance(answer, dict) or "res" not in answer:
            raise ExceptionFogifySDK("The API call for packets does not response readable object", payload=answer)
        return pd.DataFrame.from_records(answer["res"])

    # ----------------------------------------------------------- annotations

    def get_annotations(self) -> FogifySDK:
        """Fetch the action timeline into ``self.annotations`` (timestamp as naive UTC); returns self."""
        answer = self._call("GET", ANNOTATIONS_URL) or []
        if not isinstance(answer, list):
            raise ExceptionFogifySDK(f"The API answered {ANNOTATIONS_URL} with {type(answer).__name__}, not a list")
        self.annotations = annotations_frame(answer)
        return self

    def clean_annotations(self) -> Any:
        """Delete all annotations on the API."""
        return self._call("DELETE", ANNOTATIONS_URL)

    # ------------------------------------------------------------------ plots

    def plot(self, ax, service: str | None = None, metric: str | None = None,
             func: str | Callable[[pd.Series], pd.Series] | None = None, label: str | None = None,
             duration: dict | None = None, style: dict | None = None) -> FogifySDK:
        """Plot one metric of one instance on ``ax``.

        ``func='diff'`` plots differences (for cumulative counters), or pass any
        callable on the Series; ``duration`` may hold ``from``/``to`` times.
        """
        frame = self.get_metrics_from(service)
        if metric not in frame.columns:
            raise ExceptionFogifySDK(f"There is no metric {metric!r} for {service}")
        frame = _between(frame, (duration or {}).get("from"), (duration or {}).get("to"))
        line = frame[metric]
        if func == "diff":
            line = line.diff()
        elif callable(func):
            line = func(line)
        line.plot(ax=ax, label=label or metric, **(style or {}))
        return self

    def plot_annotations(self, ax, start: TimeLike | None = None, stop: TimeLike | None = None,
                         label: str = "annotation", colors_gist: str | list = "gist_yarg",
                         linestyle: str = "--") -> FogifySDK:
        """Draw a vertical line on ``ax`` for each annotation between ``start`` and ``stop``.

        ``colors_gist`` is a Matplotlib colormap name or a list of colours (reused
        in turn when there are more annotations than colours); ``label`` is the
        annotation column used for the legend.
        """
        from matplotlib import colormaps  # imported late: plotting is optional for most calls

        frame = self.get_annotations().annotations
        lower, upper = naive_utc(start), naive_utc(stop)
        if lower is not None:
            frame = frame[frame["timestamp"] >= lower]
        if upper is not None:
            frame = frame[frame["timestamp"] <= upper]
        count = len(frame)
        if count == 0:
            return self
        if isinstance(colors_gist, (list, tuple)):
            colors = [colors_gist[i % len(colors_gist)] for i in range(count)] if colors_gist else [None] * count
        else:
            try:
                cmap = colormaps[colors_gist].resampled(count)
            except KeyError:
                raise ExceptionFogifySDK(f"There is no Matplotlib colormap named {colors_gist!r}") from None
            colors = [cmap(i) for i in range(count)]
        for when, color, text in zip(frame["timestamp"], colors, frame[label]):
            ax.axvline(x=when, color=color, label=text, linestyle=linestyle)
        return self

    # --------------------------------------------------------------- actions

    def action(self, action_type: Action_type | str, **kwargs: Any) -> dict:
        """Post an action: ``POST /actions/<type>/`` with ``{"params": kwargs}``; returns the answer."""
        return self._post_action(parse_action_type(action_type), kwargs)

    def _post_action(self, kind: Action_type, params: dict, timeout: float | None = -1.0) -> dict:
        answer = self._call("POST", ACTION_PATHS[kind], json={"params": params},
                            headers=_JSON_HEADERS, timeout=timeout)
        if not is_ok(answer):
            raise ExceptionFogifySDK(f"The API did not return proper response for that action ({answer})",
                                     payload=answer)
        return answer

    def horizontal_scaling_up(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Add ``num_of_instances`` replicas to a label."""
        return self._post_action(Action_type.HORIZONTAL_SCALING,
                                 {"instance_type": instance_type, "instances": num_of_instances, "type": "up"})

    def horizontal_scaling_down(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Remove ``num_of_instances`` replicas from a label."""
        return self._post_action(Action_type.HORIZONTAL_SCALING,
                                 {"instance_type": instance_type, "instances": num_of_instances, "type": "down"})

    def vertical_scaling(self, instance_type: str, num_of_instances: int = 1, cpu: str | None = None,
                         memory: str | None = None) -> dict:
        """Change CPU (``"+20"``/``"-20"``: percent of the current limit) or memory (``"3G"``)."""
        if cpu and memory:
            raise ExceptionFogifySDK("You can not scale-up both cpu and memory at once.")
        if cpu is None and memory is None:
            raise ExceptionFogifySDK("You did not select neither cpu nor memory for vertical scaling.")
        if cpu is not None:
            _check_cpu_change(cpu)
            change = {"action": "cpu", "value": cpu}
        else:
            change = {"action": "memory", "value": memory}
        return self._post_action(Action_type.VERTICAL_SCALING,
                                 {"instance_type": instance_type, "instances": num_of_instances, **change})

    def stress(self, instance_type: str, duration: int | str = 60, num_of_instances: int = 1,
               cpu: float | None = None, io: float | None = None, vm: float | None = None,
               vm_bytes: str | None = None) -> dict:
        """Load an instance for ``duration`` seconds; cpu/io/vm are percent of its CPU allocation."""
        load = {key: value for key, value in (("cpu", cpu), ("io", io), ("vm", vm), ("vm_bytes", vm_bytes))
                if value}
        if not load:
            raise ExceptionFogifySDK("You can not set all stress parameters as None")
        return self._post_action(Action_type.STRESS, {"instance_type": instance_type, "instances": num_of_instances,
                                                      "action": {"duration": duration, **load}})

    def command(self, instance_type: str, command: str, num_of_instances: int = 1, wait: bool = False,
                timeout: float | None = None) -> Any:
        """Run ``command`` in the instances.

        Without ``wait`` it starts in the background and the API's answer is
        returned (Fogify's behaviour). With ``wait=True`` the call returns the
        results ``{instance: {"exit_code", "output"}}`` once every command ended,
        or the API's ``timeout`` (seconds) expired.
        """
        params: dict = {"instance_type": instance_type, "instances": num_of_instances,
                        "action": {"command": command}}
        http_timeout: float | None = -1.0
        if wait:
            params["wait"] = True
            http_timeout = None
            if timeout is not None:
                params["timeout"] = timeout
                http_timeout = max(self.http_timeout, float(timeout) + 30.0)
        answer = self._post_action(Action_type.COMMAND, params, timeout=http_timeout)
        return answer.get("results", {}) if wait else answer

    def update_network(self, instance_type: str, network: str, network_characteristics: dict | None = None,
                       num_of_instances: int = 1) -> dict:
        """Change a network's shaping for the instances (``uplink``/``downlink``/``bidirectional``).

        Giving only ``uplink`` or only ``downlink`` keeps the other direction.
        """
        characteristics = dict(network_characteristics or {})
        characteristics["network"] = network
        return self._post_action(Action_type.NETWORK, {"instance_type": instance_type,
                                                       "instances": num_of_instances, "network": characteristics})

    def update_link(self, network_name: str, from_node: str, to_node: str, parameters: dict,
                    bidirectional: bool = True) -> dict:
        """Change one per-peer link; see :meth:`update_links`."""
        return self.update_links(network_name, [{"from_node": from_node, "to_node": to_node,
                                                 "bidirectional": bidirectional, "parameters": parameters}])

    def update_links(self, network_name: str, links: list) -> dict:
        """Change per-peer links, one request per source label.

        Returns ``{label: answer}``; a label whose request failed maps to its
        ExceptionFogifySDK (Fogify's shape), which is also logged.
        """
        responses: dict = {}
        for label, label_links in _links_by_label(links).items():
            try:
                responses[label] = self._post_action(Action_type.UPDATE_LINKS, {
                    "network": network_name, "links": label_links, "instance_type": label, "instances": 1000})
            except ExceptionFogifySDK as error:
                logger.error("Updating the links of %s failed: %s", label, error)
                responses[label] = error
        return responses

    def link_down(self, instance_type: str, network: str, num_of_instances: int = 1) -> dict:
        """Cut the instances off ``network`` (the interface stays, nothing passes)."""
        return self._post_action(Action_type.LINK_DOWN, {"instance_type": instance_type,
                                                         "instances": num_of_instances, "network": network})

    def link_up(self, instance_type: str, network: str, num_of_instances: int = 1) -> dict:
        """Undo :meth:`link_down`."""
        return self._post_action(Action_type.LINK_UP, {"instance_type": instance_type,
                                                       "instances": num_of_instances, "network": network})

    def partition(self, from_label: str, to_label: str, network: str | None = None) -> dict:
        """Drop all traffic between two labels (on one network, or on all they share)."""
        return self._post_action(Action_type.PARTITION, _pair(from_label, to_label, network))

    def heal(self, from_label: str, to_label: str, network: str | None = None) -> dict:
        """Undo :meth:`partition`."""
        return self._post_action(Action_type.HEAL, _pair(from_label, to_label, network))

    def crash(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Stop instances abruptly, as a failing node would."""
        return self._post_action(Action_type.CRASH, {"instance_type": instance_type,
                                                     "instances": num_of_instances})

    def restart(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Start crashed instances again (with their shaping, names and monitoring)."""
        return self._post_action(Action_type.RESTART, {"instance_type": instance_type,
                                                       "instances": num_of_instances})

    # ------------------------------------------------------------- scenarios

    def scenario_execution(self, name: str | None = None,
                           remove_previous_metrics: bool = True) -> tuple[datetime, datetime]:
        """Run a scenario of the model from this client, as Fogify does.

        Each action waits its ``time`` (seconds after the previous action) and
        is then posted; waits are measured on a monotonic clock from the start,
        so slow answers do not push later actions back. The whole scenario is
        checked first (an unknown name or action type raises before anything
        runs); an action the API refuses is logged and the scenario goes on.
        Returns (start, stop) as naive UTC datetimes, comparable with the
        metrics index. :meth:`run_scenario` runs it on the server instead.
        """
        scenario = select_scenario(self.scenarios, name)
        plan = plan_scenario(scenario)
        label = scenario.get("name", name)
        logger.info("Scenario %s execution process is started", label)
        if remove_previous_metrics:
            self.clean_metrics()
        total = sum(step.time for step in plan)
        start, origin, offset = utc_now(), time.monotonic(), 0.0
        with tqdm(total=math.ceil(total), desc=f"Scenario {label}", unit="s") as bar:
            for step in plan:
                offset += step.time
                self._sleep_until(origin + offset, bar, origin)
                self._run_step(step)
            _advance(bar, bar.total)
        stop = utc_now()
        logger.info("Scenario %s is finished", label)
        if remove_previous_metrics:
            try:
                self.get_metrics()
            except ExceptionFogifySDK as error:
                logger.warning("Could not fetch the metrics after scenario %s: %s", label, error)
        return start, stop

    def _sleep_until(self, moment: float, bar: tqdm, origin: float) -> None:
        while True:
            now = time.monotonic()
            _advance(bar, now - origin)
            if now >= moment:
                return
            time.sleep(min(1.0, moment - now))

    def _run_step(self, step: PlannedAction) -> None:
        if step.action_type is None:
            return
        try:
            self._post_action(step.action_type, step.params)
            logger.info("Action %s is executed", step.action_type.value)
        except ExceptionFogifySDK as error:
            logger.error("There was a problem at the scenario execution process: %s (action %s %s)",
                         error, step.action_type.value, step.params)

    def run_scenario(self, name: str, wait: bool = True,
                     timeout: float | None = None) -> tuple[datetime, datetime]:
        """Start a scenario of the deployed model on the server (``POST /scenarios/<name>/``).

        The API fires the actions on its own clock, so timing does not depend on
        this client staying connected. With ``wait`` a bar runs over the planned
        duration until the scenario ends (interrupting the wait cancels the
        scenario); a scenario that fails raises. ``timeout`` bounds the wait
        (default: planned duration + 60 s). Returns (start, end) as naive UTC
        datetimes: the planned end without ``wait``, the actual end with it.
        """
        answer = self._call("POST", self._scenario_path(name))
        if not isinstance(answer, dict):
            raise ExceptionFogifySDK(f"The API answered the start of scenario {name} with {answer!r}")
        start, end = naive_utc(answer.get("start")), naive_utc(answer.get("end"))
        if not wait:
            return _as_datetime(start), _as_datetime(end)
        planned = (end - start).total_seconds() if start is not None and end is not None else 0.0
        limit = timeout if timeout is not None else max(planned, 0.0) + 60.0
        with tqdm(total=math.ceil(max(planned, 0.0)), desc=f"Scenario {name}", unit="s") as bar:
            try:
                status = self._wait_scenario(name, bar, limit)
            except KeyboardInterrupt:
                self._cancel_quietly(name)
                raise
        if status.get("state") == "failed":
            raise ExceptionFogifySDK(f"Scenario {name} failed: {_failures(status)}", payload=status)
        if status.get("state") == "cancelled":
            logger.warning("Scenario %s was cancelled", name)
        return (_as_datetime(naive_utc(status.get("start")) or start),
                _as_datetime(naive_utc(status.get("end")) or end))

    def _wait_scenario(self, name: str, bar: tqdm, limit: float) -> dict:
        origin = time.monotonic()
        while True:
            status = self.scenario_status(name)
            elapsed = time.monotonic() - origin
            if status.get("state") in _SCENARIO_DONE:
                _advance(bar, bar.total)
                return status
            _advance(bar, elapsed)
            if elapsed >= limit:
                raise ExceptionFogifySDK(f"Scenario {name} is still {status.get('state')} after {limit:.0f} s",
                                         payload=status)
            time.sleep(min(self.poll_interval, limit - elapsed))

    def scenario_status(self, name: str | None = None) -> Any:
        """A scenario's progress ``{name, state, start, end, actions: [...]}``; all of them without ``name``."""
        return self._call("GET", SCENARIOS_URL if name is None else self._scenario_path(name))

    def cancel_scenario(self, name: str) -> Any:
        """Stop a running server-side scenario; actions already fired stay in effect."""
        return self._call("DELETE", self._scenario_path(name))

    def _cancel_quietly(self, name: str) -> None:
        try:
            self.cancel_scenario(name)
        except ExceptionFogifySDK as error:
            logger.warning("Could not cancel scenario %s: %s", name, error)

    @staticmethod
    def _scenario_path(name: str) -> str:
        return f"{SCENARIOS_URL}{quote(str(name), safe='')}/"

    # -------------------------------------------------------------- analysis

    def effect(self, instance: str, metric: str, annotations: pd.DataFrame | None = None,
               window: float | str | timedelta = 30.0, tolerance: float = 0.1, abs_tolerance: float = 0.0,
               rate: bool = False) -> pd.DataFrame:
        """How each action changed ``metric`` of ``instance``: one row per action.

        Arguments:
          instance: ``label.N`` whose metrics to read.
          metric: a column of :meth:`get_metrics_from` (``cpu_util``, ``network_rx_<net>``, ...).
          annotations: the actions to assess, in the shape of ``self.annotations``;
            default: all actions from ``GET /annotations/`` (START/DEPLOY/STOP/UNDEPLOY
            are topology events and are left out). Pass a filtered frame to focus.
          window: seconds (or a timedelta / ``"30s"``) for the "before" period, the
            longest "during" period, and the "after" period.
          tolerance: recovery band around the before-mean, as a fraction of it.
          abs_tolerance: lower bound of that band, in the metric's unit (use it when
            the before-mean is near 0).
          rate: read a cumulative counter (bytes, CPU ns) as its per-second rate.

        Columns: timestamp, annotation, instance_name, params, mean_before,
        mean_during, mean_after, change, change_pct, median_before, median_during
        (robust to a single outlier such as a TCP retransmission), time_to_recover (seconds
        from the action until the metric is back in the band after leaving it:
        0 if it never left, NaN if it never returned). Periods: before =
        [t - window, t); during = [t, the next action or t + window, whichever is
        first); after = the window following "during".
        """
        frame = self.get_metrics_from(instance)
        if metric not in frame.columns:
            available = ", ".join(c for c in frame.columns if c != "count")
            raise ExceptionFogifySDK(f"There is no metric {metric!r} for {instance} (available: {available})")
        series = per_second(frame[metric]) if rate else frame[metric]
        if annotations is None:
            annotations = self.get_annotations().annotations
        return effect_table(series, action_annotations(annotations), to_timedelta(window),
                            tolerance=tolerance, abs_tolerance=abs_tolerance)


def _check_cpu_change(cpu: Any) -> None:
    if not isinstance(cpu, str):
        raise ExceptionFogifySDK("cpu parameter should be string")
    if not cpu or cpu[0] not in "+-":
        raise ExceptionFogifySDK("Select +/- to increase or decrease the cpu processing power")
    try:
        int(cpu[1:])
    except ValueError:
        raise ExceptionFogifySDK("The percent should be numeric") from None


def _pair(from_label: str, to_label: str, network: str | None) -> dict:
    params = {"from": from_label, "to": to_label}
    if network is not None:
        params["network"] = network
    return params


def _links_by_label(links: list) -> dict:
    """Group links by the label whose rules change: the source, and the target too when bidirectional."""
    groups: dict = {}
    for link in links:
        for key in ("from_node", "to_node"):
            if key not in link:
                raise ExceptionFogifySDK(f"A link should have the '{key}' parameter")
        groups.setdefault(link["from_node"], []).append(dict(link))
        if link.get("bidirectional"):
            groups.setdefault(link["to_node"], []).append(dict(link))
    return groups


def _failures(status: dict) -> str:
    failed = [action for action in status.get("actions") or []
              if action.get("result") not in (None, "OK", "ok")]
    if not failed:
        return status.get("message") or "no details"
    return "; ".join(f"{a.get('type')} on {a.get('instance_type')}: {a.get('result')}" for a in failed)


def _between(frame: pd.DataFrame, lower: TimeLike | None, upper: TimeLike | None) -> pd.DataFrame:
    lower, upper = naive_utc(lower), naive_utc(upper)
    if lower is not None:
        frame = frame[frame.index >= lower]
    if upper is not None:
        frame = frame[frame.index <= upper]
    return frame


def _advance(bar: tqdm, seconds: float) -> None:
    """Move a seconds bar forward to ``seconds`` (never past its total, never back)."""
    target = int(min(seconds, bar.total if bar.total is not None else seconds))
    if target > bar.n:
        bar.update(target - bar.n)


def _as_datetime(value: pd.Timestamp | None) -> datetime | None:
    return None if value is None else value.to_pydatetime()
