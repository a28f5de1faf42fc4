"""FogifySDK without a real fogify-net: pure parts, and HTTP against a small local Flask API.

The fake API answers in the documented shapes (fogify.md §2.1/§3/§4 and
DEVELOPERS.md) and records every request, so the tests read like a notebook
session and then check exactly what the SDK put on the wire.
"""

from __future__ import annotations

import calendar
import importlib
import io
import math
import os
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import ClassVar

import matplotlib.pyplot as plt  # conftest.py selected the Agg backend
import pandas as pd
import pytest
import yaml
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from FogifySDK import ExceptionFogifySDK, FidelityWarning, FogifySDK
from FogifySDK._effect import action_annotations, effect_table
from FogifySDK._frames import metrics_frame, naive_utc, per_second
from FogifySDK._scenarios import plan_scenario, select_scenario
from FogifySDK.FogifySDK import Action_type

# The getting-started walkthrough's compose file and model (steps 3, 4 and 8).
SEED_COMPOSE = """
version: '3.7'
services:
  cloud-server:
    image: taxi-exp:0.0.1
    environment: {NODE_TYPE: CLOUD_NODE}
  car-workload:
    image: taxi-exp:0.0.1
    environment: {NODE_TYPE: IOT_NODE}
  mec-svc-1:
    image: taxi-exp:0.0.1
    environment: {NODE_TYPE: EDGE_NODE, REGION: bronx}
x-fogify:
  nodes:
  - name: cloud-server-node
    capabilities: {processor: {cores: 4, clock_speed: 1400}, memory: 4G}
  - name: edge-node
    capabilities: {processor: {cores: 2, clock_speed: 1400}, memory: 2G}
  networks:
  - name: internet
    uplink: {bandwidth: 10Mbps, latency: {delay: 50ms}, drop: 0.1%}
    downlink: {bandwidth: 5Mbps, latency: {delay: 50ms}}
  - name: edge-net-1
    bidirectional: {bandwidth: 100Mbps, latency: {delay: 5ms}, drop: 0.1%}
  topology:
  - {node: cloud-server-node, service: cloud-server, label: cloud-server, replicas: 1, networks: [internet]}
  - {node: edge-node, service: mec-svc-1, label: mec-svc-1, replicas: 2, networks: [edge-net-1, internet]}
  scenarios:
  - name: scenario_network_error
    actions:
    - time: 20
      instance_type: car-1
      instances: 1
      position: 0
      action:
        type: network
        parameters:
          network: MEC-net-1
          uplink: {latency: {delay: 50ms}}
    - time: 20
      instance_type: car-1
      instances: 1
      position: 1
      action:
        type: network
        parameters:
          network: MEC-net-1
          uplink: {latency: {delay: 150ms}}
    - time: 0
      instance_type: car-2
      instances: 1
      position: 2
      action:
        type: scale-in
        parameters:
          num-of-instances: 1
"""

PLAIN_COMPOSE = "version: '3.7'\nservices:\n  moc-service:\n    image: busybox\n"


def epoch(moment: datetime) -> float:
    """Epoch seconds of a naive UTC datetime."""
    return calendar.timegm(moment.utctimetuple()) + moment.microsecond / 1e6


def rfc1123(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


# --------------------------------------------------------------------------- the fake API


class FakeApi:
    """A Flask app on 127.0.0.1 that records requests and plays scripted answers.

    ``answer(method, path, *replies)``: each reply is (body, status[, headers]) or a
    callable returning one; replies are used in turn and the last one repeats.
    """

    def __init__(self):
        self.app = Flask("fake-fogify-api")
        self.app.add_url_rule("/", "root", self._dispatch, defaults={"path": ""},
                              methods=["GET", "POST", "DELETE", "PUT"])
        self.app.add_url_rule("/<path:path>", "any", self._dispatch, methods=["GET", "POST", "DELETE", "PUT"])
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = []
            self.replies = {}

    def answer(self, method, path, *replies):
        with self.lock:
            self.replies[(method, path)] = list(replies)

    def sent(self, method=None, path=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r["method"] == method) and (path is None or r["path"] == path)]

    def _dispatch(self, path):
        files = {name: storage.read() for name, storage in request.files.items()}
        record = {"method": request.method, "path": "/" + path, "args": request.args.to_dict(),
                  "json": request.get_json(silent=True), "headers": dict(request.headers), "files": files}
        with self.lock:
            self.requests.append(record)
            replies = self.replies.get((request.method, "/" + path))
            if not replies:
                return jsonify(message=f"no route {request.method} /{path}"), 404
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if callable(reply):
            reply = reply(record)
        body, status, *rest = reply
        headers = rest[0] if rest else {}
        if isinstance(body, str):
            return body, status, {"Content-Type": "text/html", **headers}
        return jsonify(body), status, headers


@pytest.fixture(scope="module")
def fake_api():
    api = FakeApi()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.thread.join(timeout=5)


@pytest.fixture
def api(fake_api):
    fake_api.reset()
    return fake_api


@pytest.fixture
def compose_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # upload_file writes fogified-docker-compose.yaml in the cwd
    path = tmp_path / "docker-compose.yaml"
    path.write_text(SEED_COMPOSE)
    return str(path)


@pytest.fixture
def fogify(api, compose_file, monkeypatch):
    monkeypatch.delenv("FOGIFY_TOKEN", raising=False)
    client = FogifySDK(api.url, compose_file)
    client.poll_interval = 0.05
    return client


@pytest.fixture
def plain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "docker-compose.yaml"
    path.write_text(PLAIN_COMPOSE)
    return FogifySDK("controller:5000", str(path))


OK = ({"message": "OK"}, 200)


# --------------------------------------------------------------------------- URL handling


@pytest.mark.parametrize("url, expected", [
    ("http://controller:5000", "http://controller:5000/topology/"),
    ("https://controller:5000", "https://controller:5000/topology/"),
    ("controller:5000", "http://controller:5000/topology/"),
    ("127.0.0.1:5000/", "http://127.0.0.1:5000/topology/"),
    ("HTTPS://host", "HTTPS://host/topology/"),
])
def test_get_url_accepts_http_https_and_bare_addresses(url, expected):
    assert FogifySDK(url).get_url("/topology/") == expected


def test_get_url_without_path_and_empty_url():
    assert FogifySDK("controller:5000").get_url() == "http://controller:5000"
    with pytest.raises(ExceptionFogifySDK):
        FogifySDK("").get_url("/topology/")


# --------------------------------------------------------------------------- constructor and model builders


def test_constructor_reads_the_seed_model(fogify):
    assert fogify.services == ["cloud-server", "car-workload", "mec-svc-1"]
    assert [n["name"] for n in fogify.nodes] == ["cloud-server-node", "edge-node"]
    assert [n["name"] for n in fogify.networks] == ["internet", "edge-net-1"]
    assert [b["label"] for b in fogify.topology] == ["cloud-server", "mec-svc-1"]
    assert fogify.scenarios[0]["name"] == "scenario_network_error"
    assert fogify.docker_swarm_rep["services"]["mec-svc-1"]["image"] == "taxi-exp:0.0.1"
    assert "x-fogify" in fogify.docker_compose


def test_constructor_errors(tmp_path):
    with pytest.raises(ExceptionFogifySDK, match="No such file or directory"):
        FogifySDK("controller:5000", str(tmp_path / "missing.yaml"))
    no_services = tmp_path / "bad.yaml"
    no_services.write_text("version: '3.7'\n")
    with pytest.raises(ExceptionFogifySDK, match="at least services"):
        FogifySDK("controller:5000", str(no_services))


def test_plain_compose_has_empty_model(plain):
    assert (plain.nodes, plain.networks, plain.topology, plain.scenarios) == ([], [], [], [])
    assert plain.services == ["moc-service"]
    assert plain.docker_swarm_rep == {"version": "3.7", "services": {"moc-service": {"image": "busybox"}}}


def test_model_builders_build_fogify_shapes(plain):
    plain.add_node("edge", 2, 1400, "2G")
    assert plain.nodes == [{"name": "edge", "capabilities": {"processor": {"cores": 2, "clock_speed": 1400},
                                                             "memory": "2G", "disk": ""}}]
    plain.add_bidirectional_network("lan", {"bandwidth": "100Mbps"})
    plain.add_network("wan", {"bandwidth": "10Mbps"}, {"bandwidth": "5Mbps"}, capacity=10)
    assert plain.networks == [
        {"name": "lan", "bidirectional": {"bandwidth": "100Mbps"}, "capacity": None},
        {"name": "wan", "uplink": {"bandwidth": "10Mbps"}, "downlink": {"bandwidth": "5Mbps"}, "capacity": 10},
    ]
    plain.add_link("wan", "a", "b", {"properties": {"latency": {"delay": "5ms"}}})
    plain.add_link("wan", "b", "c", {"uplink": {"drop": "1%"}, "downlink": {"drop": "2%"}}, bidirectional=False)
    assert plain.networks[1]["links"] == [
        {"from_node": "a", "to_node": "b", "bidirectional": True, "properties": {"latency": {"delay": "5ms"}}},
        {"from_node": "b", "to_node": "c", "bidirectional": False,
         "uplink": {"drop": "1%"}, "downlink": {"drop": "2%"}},
    ]
    plain.add_topology_node("edge-1", "moc-service", "edge", ["lan", "wan"], replicas=3)
    assert plain.topology == [{"service": "moc-service", "node": "edge", "networks": ["lan", "wan"],
                               "label": "edge-1", "replicas": 3}]


def test_model_builders_refuse_bad_input(plain):
    plain.add_node("edge", 2, 1400, "2G")
    plain.add_bidirectional_network("lan", {"bandwidth": "100Mbps"})
    with pytest.raises(ExceptionFogifySDK, match="device already exists"):
        plain.add_node("edge", 1, 700, "1G")
    with pytest.raises(ExceptionFogifySDK, match="network already exists"):
        plain.add_network("lan", {}, {})
    with pytest.raises(ExceptionFogifySDK, match="network already exists"):
        plain.add_bidirectional_network("lan", {})
    with pytest.raises(ExceptionFogifySDK, match="does not exist"):
        plain.add_link("nowhere", "a", "b", {"properties": {}})
    with pytest.raises(ExceptionFogifySDK, match="'properties' field or both"):
        plain.add_link("lan", "a", "b", {"uplink": {}})
    with pytest.raises(ExceptionFogifySDK, match="no service"):
        plain.add_topology_node("x", "ghost", "edge", ["lan"])
    with pytest.raises(ExceptionFogifySDK, match="no device"):
        plain.add_topology_node("x", "moc-service", "ghost", ["lan"])
    with pytest.raises(ExceptionFogifySDK, match="no network"):
        plain.add_topology_node("x", "moc-service", "edge", ["ghost"])
    plain.add_topology_node("x", "moc-service", "edge", ["lan"])
    with pytest.raises(ExceptionFogifySDK, match="another topology node"):
        plain.add_topology_node("x", "moc-service", "edge", ["lan"])


def test_model_builders_need_a_compose_file():
    client = FogifySDK("controller:5000")
    with pytest.raises(ExceptionFogifySDK, match="fogify yaml"):
        client.add_node("edge", 1, 700, "1G")
    with pytest.raises(ExceptionFogifySDK):
        client.upload_file()


# --------------------------------------------------------------------------- upload_file


def test_upload_file_writes_the_model_and_returns_an_open_binary_file(plain, tmp_path):
    plain.add_node("edge", 2, 1400, "2G")
    plain.add_bidirectional_network("lan", {"bandwidth": "100Mbps"})
    plain.add_topology_node("edge-1", "moc-service", "edge", ["lan"])
    handle = plain.upload_file()
    try:
        assert "b" in handle.mode
        assert not (tmp_path / "fogified-docker-compose.yaml").exists()
        written = yaml.safe_load(handle.read())
    finally:
        handle.close()
    assert written["services"] == {"moc-service": {"image": "busybox"}}
    assert written["x-fogify"]["nodes"] == plain.nodes
    assert written["x-fogify"]["networks"] == plain.networks
    assert written["x-fogify"]["topology"] == plain.topology
    assert "scenarios" not in written["x-fogify"]


def test_upload_file_keeps_the_file_and_the_scenarios_when_asked(fogify, tmp_path):
    with fogify.upload_file(remove_file=False) as handle:
        written = yaml.safe_load(handle.read())
    assert (tmp_path / "fogified-docker-compose.yaml").exists()
    assert written["x-fogify"]["scenarios"][0]["name"] == "scenario_network_error"


# --------------------------------------------------------------------------- scenario parsing


def seed_scenarios():
    return yaml.safe_load(SEED_COMPOSE)["x-fogify"]["scenarios"]


def test_seed_scenario_plan():
    plan = plan_scenario(select_scenario(seed_scenarios(), "scenario_network_error"))
    assert [(step.position, step.time, step.action_type) for step in plan] == [
        (0, 20.0, Action_type.NETWORK), (1, 20.0, Action_type.NETWORK), (2, 0.0, Action_type.HORIZONTAL_SCALING)]
    assert plan[0].params == {"network": "MEC-net-1", "uplink": {"latency": {"delay": "50ms"}},
                              "instance_type": "car-1", "instances": 1}
    assert plan[2].params == {"instance_type": "car-2", "instances": 1, "type": "down"}


def test_scenario_forms_scale_out_noop_and_order():
    scenario = {"name": "s", "actions": [
        {"time": 1, "position": 2, "instance_type": "car", "action": "NOOP"},
        {"time": 5, "position": 1, "instance_type": "car", "instances": 1,
         "action": {"type": "scale-out", "parameters": {"num-of-instances": 3}}},
        {"time": 0, "position": 0, "instance_type": "car", "instances": 2,
         "action": {"type": "horizontal_scaling", "parameters": {"type": "up"}}},
        {"time": 0, "position": 3, "action": {"type": "partition", "parameters": {"from": "a", "to": "b"}}},
    ]}
    plan = plan_scenario(scenario)
    assert [step.position for step in plan] == [0, 1, 2, 3]
    assert plan[0].params == {"type": "up", "instance_type": "car", "instances": 2}
    assert plan[1].action_type is Action_type.HORIZONTAL_SCALING
    assert plan[1].params == {"instance_type": "car", "instances": 3, "type": "up"}
    assert plan[2].action_type is None
    assert plan[3].params == {"from": "a", "to": "b"}


@pytest.mark.parametrize("action, message", [
    ({"type": "explode"}, r"actions\[0\]\.action\.type: .*explode"),
    ({}, r"actions\[0\]\.action\.type: missing"),
    ({"type": "network", "parameters": [1]}, "parameters: expected a mapping"),
])
def test_scenario_errors_name_the_field(action, message):
    with pytest.raises(ExceptionFogifySDK, match=message):
        plan_scenario({"name": "s", "actions": [{"time": 1, "action": action}]})


def test_scenario_selection_errors():
    with pytest.raises(ExceptionFogifySDK, match="no scenario named 'nope'"):
        select_scenario(seed_scenarios(), "nope")
    with pytest.raises(ExceptionFogifySDK, match="no scenarios"):
        select_scenario([], None)
    with pytest.raises(ExceptionFogifySDK, match="time: must not be negative"):
        plan_scenario({"name": "s", "actions": [{"time": -1, "action": "NOOP"}]})
    assert select_scenario(seed_scenarios(), None)["name"] == "scenario_network_error"


def test_scenario_execution_checks_everything_before_waiting(fogify, api):
    fogify.scenarios = [{"name": "bad", "actions": [{"time": 100, "action": "NOOP"},
                                                     {"time": 0, "action": {"type": "teleport"}}]}]
    started = time.monotonic()
    with pytest.raises(ExceptionFogifySDK, match="teleport"):
        fogify.scenario_execution("bad")
    assert time.monotonic() - started < 1
    assert api.sent() == []


def test_execute_scenario_is_scenario_execution_under_the_name_fogifys_docs_use(fogify, api):
    fogify.scenarios = [{"name": "bad", "actions": [{"time": 100, "action": "NOOP"},
                                                     {"time": 0, "action": {"type": "teleport"}}]}]
    with pytest.raises(ExceptionFogifySDK, match="teleport"):
        fogify.execute_scenario("bad")
    assert api.sent() == []


# --------------------------------------------------------------------------- effect() on synthetic data

T0 = datetime(2024, 5, 1, 12, 0, 0)


def step_series(levels):
    """One sample per second from T0-60 s; ``levels`` maps (from_s, to_s) -> value, default 10."""
    index = pd.date_range(T0 - timedelta(seconds=60), T0 + timedelta(seconds=120), freq="1s", name="timestamp")
    values = []
    for moment in index:
        offset = (moment - T0).total_seconds()
        values.append(next((v for (a, b), v in levels.items() if a <= offset < b), 10.0))
    return pd.Series(values, index=index)


def annotation_rows(*rows):
    return pd.DataFrame([{"timestamp": T0 + timedelta(seconds=s), "annotation": kind,
                          "instance_name": "mec-svc-1", "params": None} for s, kind in rows])


def test_effect_of_a_stress_that_ends():
    series = step_series({(0, 20): 50.0})
    actions = action_annotations(annotation_rows((-100, "DEPLOY"), (0, "STRESS")))
    table = effect_table(series, actions, pd.Timedelta(seconds=20))
    assert list(table["annotation"]) == ["STRESS"]
    row = table.iloc[0]
    assert row["mean_before"] == 10.0 and row["mean_during"] == 50.0 and row["mean_after"] == 10.0
    assert row["change"] == 40.0 and row["change_pct"] == 400.0
    assert row["time_to_recover"] == 20.0
    assert row["median_before"] == 10.0 and row["median_during"] == 50.0


def test_effect_medians_ignore_one_outlier():
    series = step_series({(0, 1): 1000.0, (-3, -2): 500.0})  # a retransmission in each period
    table = effect_table(series, annotation_rows((0, "NETWORK")), pd.Timedelta(seconds=10))
    row = table.iloc[0]
    assert row["mean_before"] == 59.0 and row["mean_during"] == 109.0
    assert row["median_before"] == 10.0 and row["median_during"] == 10.0


def test_effect_never_recovers_never_leaves_and_no_before():
    never = effect_table(step_series({(0, 1000): 0.0}), annotation_rows((0, "LINK_DOWN")), pd.Timedelta(seconds=10))
    assert never.iloc[0]["change_pct"] == -100.0 and math.isnan(never.iloc[0]["time_to_recover"])
    calm = effect_table(step_series({(0, 5): 10.5}), annotation_rows((0, "NETWORK")), pd.Timedelta(seconds=10))
    assert calm.iloc[0]["time_to_recover"] == 0.0
    early = effect_table(step_series({}), annotation_rows((-80, "NETWORK")), pd.Timedelta(seconds=10))
    assert math.isnan(early.iloc[0]["mean_before"]) and math.isnan(early.iloc[0]["time_to_recover"])


def test_effect_during_stops_at_the_next_action_and_tolerances_apply():
    series = step_series({(0, 10): 100.0, (10, 30): 30.0, (30, 31): 12.5})
    table = effect_table(series, annotation_rows((10, "NETWORK"), (0, "LINK_DOWN")), pd.Timedelta(seconds=60))
    assert list(table["annotation"]) == ["LINK_DOWN", "NETWORK"]
    first = table.iloc[0]
    assert first["mean_during"] == 100.0  # [0, 10): the next action ends it
    assert first["time_to_recover"] == 31.0  # 12.5 is outside 10 ± 1, back at 31 s
    loose = effect_table(series, action_annotations(annotation_rows((0, "LINK_DOWN"))), pd.Timedelta(seconds=60),
                         tolerance=0.0, abs_tolerance=3.0)
    assert loose.iloc[0]["time_to_recover"] == 30.0


def test_action_annotations_parse_strings_and_drop_lifecycle_events():
    frame = pd.DataFrame([
        {"timestamp": rfc1123(T0), "annotation": "START", "instance_name": "Topology", "params": None},
        {"timestamp": rfc1123(T0 + timedelta(seconds=5)), "annotation": "STRESS", "instance_name": "a", "params": "x"},
        {"timestamp": rfc1123(T0 + timedelta(seconds=6)), "annotation": "FIDELITY_START", "instance_name": "Topology",
         "params": "host CPU saturated 97% for 2 s"},
        {"timestamp": rfc1123(T0 + timedelta(seconds=8)), "annotation": "FIDELITY_END", "instance_name": "Topology",
         "params": None},
        {"timestamp": rfc1123(T0 + timedelta(seconds=9)), "annotation": "UNDEPLOY", "instance_name": "Topology",
         "params": None},
    ])
    actions = action_annotations(frame)
    assert list(actions["annotation"]) == ["STRESS"]
    assert actions.iloc[0]["timestamp"] == pd.Timestamp(T0 + timedelta(seconds=5))


def test_per_second_rate_of_a_counter():
    index = pd.DatetimeIndex([T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=3)])
    rate = per_second(pd.Series([0.0, 200.0, 700.0], index=index))
    assert math.isnan(rate.iloc[0]) and list(rate.iloc[1:]) == [100.0, 500.0]


# --------------------------------------------------------------------------- records -> DataFrames


def test_metrics_frame_prefers_ts_and_falls_back_to_timestamp():
    later = T0 + timedelta(seconds=1, milliseconds=250)
    frame = metrics_frame([
        {"count": 2, "cpu_util": 20, "network_rx_lan": 5, "timestamp": rfc1123(later), "ts": epoch(later)},
        {"count": 1, "cpu_util": 10.5, "network_rx_lan": 1, "timestamp": rfc1123(T0)},
    ])
    assert list(frame.columns) == ["count", "cpu_util", "network_rx_lan"]
    assert frame.index.name == "timestamp" and frame.index.tz is None
    assert list(frame.index) == [pd.Timestamp(T0), pd.Timestamp(later)]
    assert list(frame["count"]) == [1, 2] and frame["cpu_util"].dtype == "float64"


def test_naive_utc_accepts_the_usual_forms():
    expected = pd.Timestamp(T0)
    assert naive_utc(T0) == expected
    assert naive_utc(T0.replace(tzinfo=timezone.utc)) == expected
    assert naive_utc(epoch(T0)) == expected
    assert naive_utc(rfc1123(T0)) == expected
    assert naive_utc("2024-05-01T14:00:00+02:00") == expected
    assert naive_utc(None) is None


# --------------------------------------------------------------------------- HTTP: deploy and undeploy


def topology(count, status=None):
    body = {"mec-svc-1": [f"mec-svc-1.{i}" for i in range(1, count + 1)]}
    return (body, 200, {"X-Fogify-Status": status} if status else {})


DEPLOY_ANSWER = ({"message": "OK", "swarm": {"services": {"cloud-server": {"deploy": {"replicas": 1}},
                                                           "mec-svc-1": {"deploy": {"replicas": 2}}}},
                  "networks": {}}, 200)


def answer_cleaning(api):
    api.answer("DELETE", "/monitorings/", ({"message": "The metrics are empty now"}, 200))
    api.answer("DELETE", "/annotations/", ({"message": "Annotations are clear"}, 200))


def test_deploy_uploads_the_model_and_waits_for_instances_and_shaping(fogify, api):
    answer_cleaning(api)
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(1, "deploying"), topology(3, "deploying"), topology(3, "running"))
    result = fogify.deploy(timeout=10)
    assert result == {"message": "The services are deployed ( {'cloud-server': 1, 'mec-svc-1': 2} )"}
    order = [(r["method"], r["path"]) for r in api.sent()]
    assert order[:4] == [("GET", "/status/"), ("DELETE", "/monitorings/"), ("DELETE", "/annotations/"),
                         ("POST", "/topology/")]  # Fogify has no /status/: its 404 means "clean as Fogify did"
    assert len(api.sent("GET", "/topology/")) == 3
    uploaded = yaml.safe_load(api.sent("POST", "/topology/")[0]["files"]["file"])
    assert [b["label"] for b in uploaded["x-fogify"]["topology"]] == ["cloud-server", "mec-svc-1"]
    assert uploaded["services"]["mec-svc-1"]["image"] == "taxi-exp:0.0.1"


class RecordingBar:
    """Stands in for tqdm: remembers the bar's total and position after each update."""

    bars: ClassVar[list] = []

    def __init__(self, total=None, **_):
        self.total, self.n, self.positions = total, 0, []
        RecordingBar.bars.append(self)

    def update(self, amount):
        self.n += amount
        self.positions.append(self.n)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def test_progress_bars_count_the_instances_the_api_lists(fogify, api, monkeypatch):
    monkeypatch.setattr(importlib.import_module("FogifySDK._deployment"), "tqdm", RecordingBar)
    RecordingBar.bars = []
    answer_cleaning(api)
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(0, "deploying"), topology(2, "deploying"), topology(3, "running"))
    fogify.deploy(timeout=5)
    api.answer("DELETE", "/topology/", ({"message": "The topology is down."}, 200))
    api.answer("GET", "/topology/", topology(3, "undeploying"), topology(3, "undeploying"),
               topology(1, "undeploying"), topology(0, "idle"))
    fogify.undeploy(timeout=5)
    deploy_bar, undeploy_bar = RecordingBar.bars
    assert deploy_bar.total == 3 and deploy_bar.positions == [2, 3]
    assert undeploy_bar.total == 3 and undeploy_bar.positions == [2, 3]


def test_deploy_reports_the_apis_error_for_a_bad_model(fogify, api):
    answer_cleaning(api)
    api.answer("POST", "/topology/",
               ({"message": "x-fogify.networks[0].uplink.bandwidth: unknown unit 'Mbs'",
                 "field": "x-fogify.networks[0].uplink.bandwidth"}, 400))
    with pytest.raises(ExceptionFogifySDK, match="unknown unit 'Mbs'") as caught:
        fogify.deploy()
    assert caught.value.status_code == 400
    assert caught.value.message == "x-fogify.networks[0].uplink.bandwidth: unknown unit 'Mbs'"
    assert caught.value.field == "x-fogify.networks[0].uplink.bandwidth"


def test_a_refused_deploy_keeps_the_running_deployments_metrics_and_annotations(fogify, api):
    api.answer("GET", "/status/", ({"status": "running", "message": "", "instances": []}, 200))
    answer_cleaning(api)
    api.answer("POST", "/topology/", ({"message": "The system has a deployed instance."}, 409))
    fogify.data = {"mec-svc-1.1": [{"count": 1, "cpu": 1.0}]}
    with pytest.raises(ExceptionFogifySDK, match="The system has a deployed instance.") as caught:
        fogify.deploy(timeout=5)
    assert caught.value.status_code == 409 and caught.value.field is None
    assert not api.sent("DELETE", "/monitorings/") and not api.sent("DELETE", "/annotations/")
    assert fogify.data == {"mec-svc-1.1": [{"count": 1, "cpu": 1.0}]}


@pytest.mark.parametrize("progress", [
    ({"message": "The deployment is failed. Please check the logs of the Fogify Controller."}, 500),
    ({}, 200, {"X-Fogify-Status": "error", "X-Fogify-Message": "The deployment is failed: image missing"}),
])
def test_deploy_raises_when_the_deployment_fails(fogify, api, progress):
    answer_cleaning(api)
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(1, "deploying"), progress)
    with pytest.raises(ExceptionFogifySDK, match="The deployment is failed"):
        fogify.deploy(timeout=10)


def test_deploy_timeout_fires_and_removes_the_unfinished_deployment(fogify, api):
    fogify.poll_interval = 1.0  # the real cadence
    answer_cleaning(api)
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(1, "deploying"))
    api.answer("DELETE", "/topology/", ({"message": "The topology is down."}, 200))
    started = time.monotonic()
    with pytest.raises(ExceptionFogifySDK, match="did not finish within 1.5 s: 1 of 3"):
        fogify.deploy(timeout=1.5)
    assert 1.4 <= time.monotonic() - started < 3.0
    assert len(api.sent("DELETE", "/topology/")) == 1
    assert 2 <= len(api.sent("GET", "/topology/")) <= 3


def test_deploy_keeps_going_when_cleaning_is_refused(fogify, api):
    api.answer("DELETE", "/monitorings/", ({"message": "nothing is deployed"}, 409))
    api.answer("DELETE", "/annotations/", ({"message": "nothing is deployed"}, 409))
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(3))
    assert fogify.deploy(timeout=5)["message"].startswith("The services are deployed")


def test_undeploy_waits_until_no_instance_is_left(fogify, api):
    api.answer("DELETE", "/topology/", ({"message": "The topology is down."}, 200))
    api.answer("GET", "/topology/", topology(2, "undeploying"), topology(1, "undeploying"), topology(0, "idle"))
    assert fogify.undeploy(timeout=5) == {"message": "The 2 services are undeployed"}
    assert fogify.data == {}


def test_undeploy_errors_and_timeout(fogify, api):
    api.answer("DELETE", "/topology/", ({"message": "Nothing is deployed."}, 409))
    with pytest.raises(ExceptionFogifySDK, match="Nothing is deployed") as caught:
        fogify.undeploy()
    assert caught.value.status_code == 409
    api.answer("DELETE", "/topology/", ({"message": "The topology is down."}, 200))
    api.answer("GET", "/topology/", topology(2, "undeploying"))
    with pytest.raises(ExceptionFogifySDK, match="did not finish within 0.3 s: 2 instances remain"):
        fogify.undeploy(timeout=0.3)


def test_info_and_status(fogify, api):
    api.answer("GET", "/topology/", topology(2, "running"))
    status = {"status": "running", "message": "", "shaping": {"mechanism": "netem"},
              "instances": [{"name": "mec-svc-1.1", "label": "mec-svc-1", "service": "mec-svc-1",
                             "node": "edge-node", "state": "running", "networks": {"internet": "10.0.0.2"},
                             "cpus": 1.16, "memory": "2G"}]}
    api.answer("GET", "/status/", (status, 200))
    assert fogify.info() == {"mec-svc-1": ["mec-svc-1.1", "mec-svc-1.2"]}
    assert fogify.status() == status


# --------------------------------------------------------------------------- HTTP: errors, tokens


def test_every_http_error_carries_the_servers_message(fogify, api):
    api.answer("POST", "/actions/stress/", ({"message": "unknown instance 'mec-svc-9'"}, 404))
    with pytest.raises(ExceptionFogifySDK, match="unknown instance 'mec-svc-9'") as caught:
        fogify.stress("mec-svc-9", cpu=50)
    assert caught.value.status_code == 404
    api.answer("GET", "/monitorings/", ({"Error": "agent unreachable"}, 200))
    with pytest.raises(ExceptionFogifySDK, match="agent unreachable"):
        fogify.get_metrics()
    api.answer("GET", "/annotations/", ("<html>Internal Server Error</html>", 500))
    with pytest.raises(ExceptionFogifySDK, match="Internal Server Error"):
        fogify.get_annotations()
    api.answer("POST", "/actions/command/", ({"message": "NOT OK"}, 200))
    with pytest.raises(ExceptionFogifySDK, match="NOT OK"):
        fogify.command("mec-svc-1", "true")


def test_an_unreachable_api_is_an_sdk_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ExceptionFogifySDK, match="Cannot reach the Fogify API"):
        FogifySDK(f"127.0.0.1:{port}").info()


def test_bearer_token_from_argument_or_environment(api, monkeypatch):
    api.answer("GET", "/topology/", topology(0))
    monkeypatch.delenv("FOGIFY_TOKEN", raising=False)
    FogifySDK(api.url).info()
    FogifySDK(api.url, token="s3cret").info()
    monkeypatch.setenv("FOGIFY_TOKEN", "from-env")
    FogifySDK(api.url).info()
    sent = [r["headers"].get("Authorization") for r in api.sent("GET", "/topology/")]
    assert sent == [None, "Bearer s3cret", "Bearer from-env"]


# --------------------------------------------------------------------------- HTTP: action bodies


def params_of(api, path):
    (sent,) = api.sent("POST", path)
    assert sent["headers"]["Content-Type"] == "application/json; charset=utf-8"
    return sent["json"]


@pytest.mark.parametrize("call, path, body", [
    (lambda f: f.vertical_scaling("mec-svc-1", cpu="+20"), "/actions/vertical_scaling/",
     {"instance_type": "mec-svc-1", "instances": 1, "action": "cpu", "value": "+20"}),
    (lambda f: f.vertical_scaling("mec-svc-1", 2, memory="3G"), "/actions/vertical_scaling/",
     {"instance_type": "mec-svc-1", "instances": 2, "action": "memory", "value": "3G"}),
    (lambda f: f.stress("mec-svc-1", cpu=70), "/actions/stress/",
     {"instance_type": "mec-svc-1", "instances": 1, "action": {"duration": 60, "cpu": 70}}),
    (lambda f: f.stress("mec-svc-1.1", duration="300s", io=10, vm=20, vm_bytes="64M"), "/actions/stress/",
     {"instance_type": "mec-svc-1.1", "instances": 1,
      "action": {"duration": "300s", "io": 10, "vm": 20, "vm_bytes": "64M"}}),
    (lambda f: f.update_network("mec-svc-1", "edge-net-1", {"uplink": {"latency": {"delay": "50ms"}}}),
     "/actions/network/",
     {"instance_type": "mec-svc-1", "instances": 1,
      "network": {"uplink": {"latency": {"delay": "50ms"}}, "network": "edge-net-1"}}),
    (lambda f: f.horizontal_scaling_up("mec-svc-1", 2), "/actions/horizontal_scaling/",
     {"instance_type": "mec-svc-1", "instances": 2, "type": "up"}),
    (lambda f: f.horizontal_scaling_down("mec-svc-1"), "/actions/horizontal_scaling/",
     {"instance_type": "mec-svc-1", "instances": 1, "type": "down"}),
    (lambda f: f.command("mec-svc-1", "ls /"), "/actions/command/",
     {"instance_type": "mec-svc-1", "instances": 1, "action": {"command": "ls /"}}),
    (lambda f: f.link_down("car-workload-1", "edge-net-1", 2), "/actions/link_down/",
     {"instance_type": "car-workload-1", "instances": 2, "network": "edge-net-1"}),
    (lambda f: f.link_up("car-workload-1", "edge-net-1"), "/actions/link_up/",
     {"instance_type": "car-workload-1", "instances": 1, "network": "edge-net-1"}),
    (lambda f: f.partition("mec-svc-1", "cloud-server"), "/actions/partition/",
     {"from": "mec-svc-1", "to": "cloud-server"}),
    (lambda f: f.heal("mec-svc-1", "cloud-server", network="internet"), "/actions/heal/",
     {"from": "mec-svc-1", "to": "cloud-server", "network": "internet"}),
    (lambda f: f.crash("mec-svc-1.2"), "/actions/crash/", {"instance_type": "mec-svc-1.2", "instances": 1}),
    (lambda f: f.restart("mec-svc-1", 2), "/actions/restart/", {"instance_type": "mec-svc-1", "instances": 2}),
    (lambda f: f.action("NETWORK", instance_type="a", instances=1, network="n", uplink={"drop": "1%"}),
     "/actions/network/", {"instance_type": "a", "instances": 1, "network": "n", "uplink": {"drop": "1%"}}),
    (lambda f: f.action(Action_type.UPDATE_LINKS, instance_type="a", network="n", links=[]), "/actions/links/",
     {"instance_type": "a", "network": "n", "links": []}),
])
def test_action_bodies_match_fogifys_contract(fogify, api, call, path, body):
    api.answer("POST", path, OK)
    assert call(fogify) == {"message": "OK"}
    assert params_of(api, path) == {"params": body}


def test_update_network_does_not_change_the_callers_dict(fogify, api):
    api.answer("POST", "/actions/network/", OK)
    characteristics = {"bidirectional": {"bandwidth": "1Mbps"}}
    fogify.update_network("a", "lan", characteristics)
    assert characteristics == {"bidirectional": {"bandwidth": "1Mbps"}}


def test_update_links_sends_one_request_per_label(fogify, api):
    api.answer("POST", "/actions/links/", OK)
    answers = fogify.update_links("internet", [
        {"from_node": "mec-svc-1", "to_node": "cloud-server", "bidirectional": True,
         "parameters": {"properties": {"latency": {"delay": "80ms"}}}},
        {"from_node": "mec-svc-1", "to_node": "car-1", "bidirectional": False,
         "parameters": {"uplink": {"drop": "1%"}, "downlink": {"drop": "1%"}}},
    ])
    assert answers == {"mec-svc-1": {"message": "OK"}, "cloud-server": {"message": "OK"}}
    sent = {r["json"]["params"]["instance_type"]: r["json"]["params"] for r in api.sent("POST", "/actions/links/")}
    assert [link["to_node"] for link in sent["mec-svc-1"]["links"]] == ["cloud-server", "car-1"]
    assert [link["to_node"] for link in sent["cloud-server"]["links"]] == ["cloud-server"]
    assert sent["cloud-server"]["network"] == "internet" and sent["cloud-server"]["instances"] == 1000
    with pytest.raises(ExceptionFogifySDK, match="'to_node'"):
        fogify.update_links("internet", [{"from_node": "a"}])


def test_update_link_failures_are_returned_per_label(fogify, api):
    api.answer("POST", "/actions/links/", ({"message": "unknown label 'ghost'"}, 404))
    answers = fogify.update_link("internet", "ghost", "b", {"properties": {}}, bidirectional=False)
    assert isinstance(answers["ghost"], ExceptionFogifySDK) and "ghost" in str(answers["ghost"])


def test_action_argument_errors_send_nothing(fogify, api):
    with pytest.raises(ExceptionFogifySDK, match="not defined"):
        fogify.action("TELEPORT", instance_type="a")
    with pytest.raises(ExceptionFogifySDK, match="both cpu and memory"):
        fogify.vertical_scaling("a", cpu="+10", memory="1G")
    with pytest.raises(ExceptionFogifySDK, match="neither cpu nor memory"):
        fogify.vertical_scaling("a")
    with pytest.raises(ExceptionFogifySDK, match="should be string"):
        fogify.vertical_scaling("a", cpu=20)
    with pytest.raises(ExceptionFogifySDK, match=r"Select \+/-"):
        fogify.vertical_scaling("a", cpu="20")
    with pytest.raises(ExceptionFogifySDK, match="numeric"):
        fogify.vertical_scaling("a", cpu="+x")
    with pytest.raises(ExceptionFogifySDK, match="stress parameters"):
        fogify.stress("a")
    assert api.sent() == []


def test_command_waits_for_results(fogify, api):
    results = {"mec-svc-1.1": {"exit_code": 0, "output": "hello\n"},
               "mec-svc-1.2": {"exit_code": 1, "output": "boom\n"}}
    api.answer("POST", "/actions/command/", ({"message": "OK", "results": results}, 200))
    assert fogify.command("mec-svc-1", "echo hello", 2, wait=True, timeout=5) == results
    assert params_of(api, "/actions/command/") == {"params": {
        "instance_type": "mec-svc-1", "instances": 2, "action": {"command": "echo hello"},
        "wait": True, "timeout": 5}}


# --------------------------------------------------------------------------- HTTP: metrics, packets, annotations


def metric_record(count, seconds, cpu, with_ts=True):
    moment = T0 + timedelta(seconds=seconds)
    record = {"count": count, "cpu_util": cpu, "cpu": 1e9 * count, "memory": 1024.0,
              "network_rx_edge-net-1": 100.0 * count, "timestamp": rfc1123(moment)}
    if with_ts:
        record["ts"] = epoch(moment)
    return record


def test_get_metrics_from_builds_the_frame_and_fetches_increments(fogify, api):
    first = [metric_record(2, 1.5, 20.0), metric_record(1, 0.5, 10.0, with_ts=False)]
    second = [metric_record(2, 1.5, 20.0), metric_record(3, 2.5, 30.0)]
    api.answer("GET", "/monitorings/", ({"mec-svc-1.1": first}, 200), ({"mec-svc-1.1": second}, 200))
    frame = fogify.get_metrics_from("mec-svc-1.1")
    assert frame.columns[0] == "count"
    assert set(frame.columns) == {"count", "cpu_util", "cpu", "memory", "network_rx_edge-net-1"}
    assert frame.index.name == "timestamp" and frame.index.tz is None
    # count 1 had no ts: whole seconds from its RFC 1123 timestamp; count 2 keeps its .5 s from ts
    assert list(frame.index) == [pd.Timestamp(T0), pd.Timestamp(T0 + timedelta(seconds=1.5))]
    frame = fogify.get_metrics_from("mec-svc-1.1")
    assert list(frame["count"]) == [1, 2, 3] and list(frame["cpu_util"]) == [10.0, 20.0, 30.0]
    fetches = [r["args"] for r in api.sent("GET", "/monitorings/")]
    assert fetches[0] == {"service": "mec-svc-1.1"}
    assert fetches[1] == {"service": "mec-svc-1.1", "from_timestamp": str(math.floor(epoch(T0) + 1.5 - 10))}


def test_metrics_from_a_degraded_window_warn_and_carry_the_fidelity_column(fogify, api):
    records = [{**metric_record(1, 0, 1.0), "fidelity": 1.0}, {**metric_record(2, 1, 1.0), "fidelity": 0.0},
               {**metric_record(3, 2, 1.0), "fidelity": 0.0}]
    api.answer("GET", "/monitorings/", ({"a.1": records}, 200))
    with pytest.warns(FidelityWarning, match=r"2 of 3 rounds of a\.1's metrics .* not faithful"):
        frame = fogify.get_metrics_from("a.1")
    assert list(frame["fidelity"]) == [1.0, 0.0, 0.0]
    assert frame.diff()["cpu"].iloc[1] == 1e9  # a numeric column: Fogify's notebooks diff() whole frames


def test_rounds_marked_degraded_after_they_were_fetched_are_fetched_again(fogify, api):
    first = [{**metric_record(n, n - 1, 1.0), "fidelity": 1.0} for n in (1, 2, 3)]
    later = [{**record, "fidelity": 0.0} for record in first[1:]] + [{**metric_record(4, 3, 1.0), "fidelity": 0.0}]
    api.answer("GET", "/monitorings/", ({"a.1": first}, 200), ({"a.1": later}, 200))
    assert list(fogify.get_metrics_from("a.1")["fidelity"]) == [1.0, 1.0, 1.0]
    with pytest.warns(FidelityWarning, match="3 of 4 rounds"):
        frame = fogify.get_metrics_from("a.1")
    assert list(frame["count"]) == [1, 2, 3, 4] and list(frame["fidelity"]) == [1.0, 0.0, 0.0, 0.0]


def test_metrics_of_a_faithful_window_and_of_fogify_do_not_warn(fogify, api, recwarn):
    api.answer("GET", "/monitorings/", ({"a.1": [{**metric_record(1, 0, 1.0), "fidelity": 1.0}],
                                          "b.1": [metric_record(1, 0, 1.0)]}, 200))
    fogify.get_metrics_from("a.1")
    fogify.get_metrics_from("b.1")
    assert not [w for w in recwarn if issubclass(w.category, FidelityWarning)]


def test_fidelity_returns_the_episodes_as_a_frame(fogify, api):
    episode = {"check": "delay_late", "target": "wan (car.1 uplink)", "start": epoch(T0),
               "end": epoch(T0 + timedelta(seconds=7)), "instances": ["car.1"], "network": "wan",
               "reason": "delay line late by 3.2 ms p99 on wan (car.1 uplink) for 2 s", "worst": 3.2}
    api.answer("GET", "/fidelity/", ({"fidelity": "degraded", "reasons": ["host CPU saturated 97% for 4 s"],
                                      "thresholds": {"delay_late_ms": 1.0},
                                      "episodes": [episode, {**episode, "end": None, "check": "host_cpu"}]}, 200))
    frame = fogify.fidelity(from_timestamp=T0, instance="car.1")
    assert api.sent("GET", "/fidelity/")[0]["args"] == {"from_timestamp": str(int(epoch(T0))), "instance": "car.1"}
    assert list(frame.columns) == ["start", "end", "duration_s", "check", "target", "instances", "network",
                                   "reason", "worst"]
    assert frame.loc[0, "start"] == pd.Timestamp(T0) and frame.loc[0, "duration_s"] == 7.0
    assert pd.isna(frame.loc[1, "end"]) and frame.loc[1, "duration_s"] > 7
    assert fogify.fidelity_status["fidelity"] == "degraded"
    api.answer("GET", "/fidelity/", ({"fidelity": "ok", "reasons": [], "thresholds": {}, "episodes": []}, 200))
    assert fogify.fidelity().empty


def test_get_metrics_time_window_is_sent_as_epoch_seconds(fogify, api):
    api.answer("GET", "/monitorings/", ({"a.1": [metric_record(1, 0, 1.0)], "b.1": []}, 200))
    fogify.get_metrics(from_timestamp=T0, to_timestamp=T0 + timedelta(seconds=10.2))
    assert api.sent("GET", "/monitorings/")[0]["args"] == {
        "from_timestamp": str(int(epoch(T0))), "to_timestamp": str(int(epoch(T0)) + 11)}
    assert set(fogify.data) == {"a.1", "b.1"}
    assert fogify.get_metrics_from("b.1").empty


def test_clean_metrics_empties_the_cache(fogify, api):
    api.answer("DELETE", "/monitorings/", ({"message": "The metrics are empty now"}, 200))
    fogify.data = {"a.1": [metric_record(1, 0, 1.0)]}
    assert fogify.clean_metrics() == {"message": "The metrics are empty now"}
    assert fogify.data == {}


def test_get_network_packets_from(fogify, api):
    rows = [{"service_id": "mec-svc-1", "src_ip": "10.0.0.2", "dest_ip": "10.0.0.3", "protocol": "TCP",
             "size": "1200", "count": "3"}]
    api.answer("GET", "/packets/", ({"res": rows}, 200))
    frame = fogify.get_network_packets_from("mec-svc-1", packet_type="TCP")
    assert list(frame["src_ip"]) == ["10.0.0.2"]
    assert api.sent("GET", "/packets/")[0]["args"] == {"service": "mec-svc-1", "packet_type": "TCP"}
    api.answer("GET", "/packets/", ({"Error": "no sniffing"}, 200))
    with pytest.raises(ExceptionFogifySDK, match="no sniffing"):
        fogify.get_network_packets_from("mec-svc-1")


ANNOTATIONS = [
    {"timestamp": rfc1123(T0), "ts": epoch(T0), "annotation": "DEPLOY", "instance_name": "Topology", "params": None},
    {"timestamp": rfc1123(T0 + timedelta(seconds=20)), "ts": epoch(T0 + timedelta(seconds=20.4)),
     "annotation": "STRESS", "instance_name": "mec-svc-1", "params": "Parameters: cpu 70"},
    {"timestamp": rfc1123(T0 + timedelta(seconds=60)), "annotation": "NETWORK", "instance_name": "mec-svc-1",
     "params": "Parameters: Network => edge-net-1"},
]


def test_get_annotations_and_clean(fogify, api):
    api.answer("GET", "/annotations/", (ANNOTATIONS, 200))
    api.answer("DELETE", "/annotations/", ({"message": "Annotations are clear"}, 200))
    assert fogify.get_annotations() is fogify
    frame = fogify.annotations
    assert list(frame.columns) == ["timestamp", "annotation", "instance_name", "params"]
    assert list(frame["timestamp"]) == [pd.Timestamp(T0), pd.Timestamp(T0 + timedelta(seconds=20.4)),
                                        pd.Timestamp(T0 + timedelta(seconds=60))]
    assert fogify.clean_annotations() == {"message": "Annotations are clear"}


def test_plot_and_plot_annotations_with_the_timestamp_index(fogify, api):
    records = [metric_record(i, i, 10.0 * i) for i in range(1, 80)]
    api.answer("GET", "/monitorings/", ({"mec-svc-1.1": records}, 200))
    api.answer("GET", "/annotations/", (ANNOTATIONS, 200))
    fig, ax = plt.subplots()
    try:
        data = fogify.get_metrics_from("mec-svc-1.1")
        start, end = T0 + timedelta(seconds=10), T0 + timedelta(seconds=70)
        data = data[(data.index > start) & (data.index < end)]
        data["network_rx_edge-net-1"].diff().plot(ax=ax, label="network-in")
        fogify.plot(ax, service="mec-svc-1.1", metric="cpu_util", func="diff", label="cpu",
                    duration={"from": start, "to": end})
        assert len(ax.lines) == 2
        fogify.plot_annotations(ax, start=start, stop=end, colors_gist=["gray"])
        assert len(ax.lines) == 4 and ax.lines[-1].get_label() == "NETWORK"
        fogify.plot_annotations(ax)  # the default colormap, through matplotlib.colormaps
        assert len(ax.lines) == 7
        ax.legend()
        fig.savefig(io.BytesIO(), format="png")
    finally:
        plt.close(fig)


def test_effect_end_to_end(fogify, api):
    records = [metric_record(i, i, 50.0 if 21 <= i < 40 else 10.0) for i in range(100)]
    api.answer("GET", "/monitorings/", ({"mec-svc-1.1": records}, 200))
    api.answer("GET", "/annotations/", (ANNOTATIONS[:2], 200))
    table = fogify.effect("mec-svc-1.1", "cpu_util", window=15)
    assert list(table["annotation"]) == ["STRESS"]
    row = table.iloc[0]
    assert row["mean_before"] == 10.0 and row["mean_during"] == 50.0 and row["change_pct"] == 400.0
    assert row["time_to_recover"] == pytest.approx(40 - 20.4)
    rates = fogify.effect("mec-svc-1.1", "network_rx_edge-net-1", rate=True, window="10s")
    assert rates.iloc[0]["mean_before"] == pytest.approx(100.0) and rates.iloc[0]["change"] == pytest.approx(0)
    with pytest.raises(ExceptionFogifySDK, match="no metric 'gpu'"):
        fogify.effect("mec-svc-1.1", "gpu")


# --------------------------------------------------------------------------- scenarios over HTTP


def test_scenario_execution_runs_the_seed_forms_on_time(fogify, api):
    fogify.scenarios = [{"name": "quick", "actions": [
        {"time": 0, "position": 0, "instance_type": "car-1", "instances": 1,
         "action": {"type": "network", "parameters": {"network": "MEC-net-1", "uplink": {"latency": {"delay": "50ms"}}}}},
        {"time": 0.3, "position": 1, "instance_type": "car-2", "instances": 1,
         "action": {"type": "scale-in", "parameters": {"num-of-instances": 1}}},
        {"time": 0, "position": 2, "instance_type": "ghost", "instances": 1,
         "action": {"type": "stress", "parameters": {"action": {"cpu": 50, "duration": 5}}}},
        {"time": 0, "position": 3, "action": "NOOP"},
    ]}]
    answer_cleaning(api)
    api.answer("POST", "/actions/network/", OK)
    api.answer("POST", "/actions/horizontal_scaling/", OK)
    api.answer("POST", "/actions/stress/", ({"message": "unknown label 'ghost'"}, 404))
    api.answer("GET", "/monitorings/", ({}, 200))
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    start, stop = fogify.scenario_execution("quick")
    assert start.tzinfo is None and stop.tzinfo is None
    assert before - timedelta(seconds=1) <= start <= stop
    assert (stop - start).total_seconds() >= 0.3
    assert params_of(api, "/actions/network/") == {"params": {
        "network": "MEC-net-1", "uplink": {"latency": {"delay": "50ms"}}, "instance_type": "car-1", "instances": 1}}
    assert params_of(api, "/actions/horizontal_scaling/") == {"params": {
        "instance_type": "car-2", "instances": 1, "type": "down"}}
    assert len(api.sent("POST", "/actions/stress/")) == 1  # refused, logged, and the scenario went on
    assert api.sent()[0]["path"] == "/monitorings/"  # metrics cleaned first
    assert api.sent()[-1]["method"] == "GET" and api.sent()[-1]["path"] == "/monitorings/"


def scenario_state(state, start, end, actions=()):
    return ({"name": "s1", "state": state, "start": start, "end": end, "actions": list(actions)}, 200)


def test_run_scenario_waits_for_the_server(fogify, api):
    now = time.time()
    api.answer("POST", "/scenarios/s1/", ({"message": "OK", "name": "s1", "start": now, "end": now + 0.2}, 200))
    api.answer("GET", "/scenarios/s1/", scenario_state("running", now, now + 0.2),
               scenario_state("finished", now, now + 0.25))
    start, end = fogify.run_scenario("s1")
    assert isinstance(start, datetime) and start.tzinfo is None
    assert start == pd.Timestamp(now, unit="s").round("us").to_pydatetime()
    assert (end - start).total_seconds() == pytest.approx(0.25, abs=1e-3)
    assert len(api.sent("GET", "/scenarios/s1/")) == 2


def test_run_scenario_without_waiting_returns_the_plan(fogify, api):
    now = time.time()
    api.answer("POST", "/scenarios/s1/", ({"message": "OK", "name": "s1", "start": now, "end": now + 40}, 200))
    start, end = fogify.run_scenario("s1", wait=False)
    assert (end - start).total_seconds() == pytest.approx(40, abs=1e-3)
    assert api.sent("GET", "/scenarios/s1/") == []


def test_run_scenario_failures(fogify, api):
    now = time.time()
    api.answer("POST", "/scenarios/s1/", ({"message": "OK", "name": "s1", "start": now, "end": now + 1}, 200))
    api.answer("GET", "/scenarios/s1/", scenario_state("failed", now, now + 1, [
        {"position": 0, "type": "network", "instance_type": "car-1", "planned": now, "fired": now,
         "lateness_ms": 1.0, "result": "unknown network 'MEC-net-1'"}]))
    with pytest.raises(ExceptionFogifySDK, match="unknown network 'MEC-net-1'"):
        fogify.run_scenario("s1")
    api.answer("POST", "/scenarios/nope/", ({"message": "unknown scenario 'nope'"}, 404))
    with pytest.raises(ExceptionFogifySDK, match="unknown scenario 'nope'"):
        fogify.run_scenario("nope")
    api.answer("GET", "/scenarios/s1/", scenario_state("running", now, now + 1))
    with pytest.raises(ExceptionFogifySDK, match="still running"):
        fogify.run_scenario("s1", timeout=0.2)


def test_scenario_status_and_cancel(fogify, api):
    api.answer("GET", "/scenarios/", ([{"name": "s1", "state": "running"}], 200))
    api.answer("GET", "/scenarios/s b/", scenario_state("running", 1.0, 2.0))
    api.answer("DELETE", "/scenarios/s1/", ({"message": "OK"}, 200))
    assert fogify.scenario_status() == [{"name": "s1", "state": "running"}]
    assert fogify.scenario_status("s b")["state"] == "running"
    assert fogify.cancel_scenario("s1") == {"message": "OK"}


def test_no_stray_files_left_in_the_cwd(fogify, api, tmp_path):
    answer_cleaning(api)
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(3))
    fogify.deploy(timeout=5)
    assert sorted(os.listdir(tmp_path)) == ["docker-compose.yaml"]


# --------------------------------------------------------------------------- mobility and traces


@pytest.mark.parametrize("call, path, body", [
    (lambda f: f.move("car-workload-1", "edge-net-2"), "/actions/move/",
     {"instance_type": "car-workload-1", "to": "edge-net-2", "instances": 1}),
    (lambda f: f.move("car-workload-1", "edge-net-2", "edge-net-1", overlap="500ms", num_of_instances=None),
     "/actions/move/", {"instance_type": "car-workload-1", "to": "edge-net-2", "from": "edge-net-1",
                        "overlap": "500ms"}),
    (lambda f: f.trace("pause"), "/actions/trace/", {"command": "pause"}),
    (lambda f: f.trace("stop", "edge-net-1"), "/actions/trace/", {"command": "stop", "name": "edge-net-1"}),
    (lambda f: f.trace(network="edge-net-1", points=[{"time_s": 0, "delay": "20ms"}], instance_type="mec-svc-1",
                       mode="linear", loop=False),
     "/actions/trace/", {"command": "start", "network": "edge-net-1", "instance_type": "mec-svc-1",
                         "points": [{"time_s": 0, "delay": "20ms"}], "mode": "linear", "loop": False}),
])
def test_move_and_trace_bodies(fogify, api, call, path, body):
    api.answer("POST", path, OK)
    assert call(fogify) == {"message": "OK"}
    assert params_of(api, path) == {"params": body}


def test_a_route_becomes_moves_in_a_client_side_scenario():
    plan = plan_scenario({"name": "drive", "actions": [{"time": 10, "action": "NOOP"}],
                          "routes": [{"instance_type": "car", "instances": 1, "overlap": "200ms",
                                      "route": [{"at": 0, "network": "r1"}, {"at": "5s", "network": "r2"},
                                                {"at": 12, "network": "r1", "overlap": 0}]}]})
    assert [(step.position, step.time, step.action_type) for step in plan] == [
        (0, 5, Action_type.MOVE), (1, 5, None), (2, 2, Action_type.MOVE)]
    assert plan[0].params == {"instance_type": "car", "instances": 1, "from": "r1", "to": "r2", "overlap": "200ms"}
    assert plan[2].params["overlap"] == 0
    with pytest.raises(ExceptionFogifySDK, match=r"routes\[0\].route: expected at least two waypoints"):
        plan_scenario({"name": "d", "routes": [{"instance_type": "car", "route": [{"at": 0, "network": "r1"}]}]})


def test_deploy_uploads_the_trace_files_the_model_names(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    document = yaml.safe_load(SEED_COMPOSE)
    document["x-fogify"]["networks"][1]["trace"] = "traces/cell.csv"
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "cell.csv").write_text("time_s,delay\n0,5\n")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(document))
    client = FogifySDK(api.url, str(tmp_path / "m.yaml"))
    answer_cleaning(api)
    api.answer("POST", "/topology/", DEPLOY_ANSWER)
    api.answer("GET", "/topology/", topology(3))
    client.deploy(timeout=5)
    (sent,) = api.sent("POST", "/topology/")
    assert sent["files"]["traces"] == b"time_s,delay\n0,5\n"
    (tmp_path / "traces" / "cell.csv").unlink()
    with pytest.raises(ExceptionFogifySDK, match="trace file traces/cell.csv cannot be read"):
        client.deploy(timeout=5)
