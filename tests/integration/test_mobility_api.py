"""Mobility and traces through the API and the SDK, as a notebook would use them.

A compose file with a trace file next to it is deployed with the SDK (which
uploads the trace); the trace starts with the deployment, is paused, resumed
and stopped by action; a device is moved by the SDK and by a scenario's route
run on the server; /status/, /annotations/ and the hosts files show each step.
"""

from __future__ import annotations

import statistics

import pytest
import yaml

from .conftest import BASE_IMAGE, real_api, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

COMPOSE = {
    "version": "3.7",
    "services": {"box": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
    "x-fogify": {
        "nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "128M"}}],
        "networks": [
            {"name": "region-1", "bidirectional": {"bandwidth": "50Mbps", "latency": {"delay": "4ms"}}},
            {"name": "region-2", "bidirectional": {"bandwidth": "50Mbps", "latency": {"delay": "4ms"}},
             "trace": {"file": "traces/cell.csv", "resolution": "100ms"}},
        ],
        "topology": [
            {"node": "n", "service": "box", "label": "car", "replicas": 1, "networks": ["region-1"]},
            {"node": "n", "service": "box", "label": "edge-1", "replicas": 1, "networks": ["region-1"]},
            {"node": "n", "service": "box", "label": "edge-2", "replicas": 1, "networks": ["region-2"]},
        ],
        "scenarios": [{"name": "drive", "actions": [{"time": 2, "action": "NOOP"}],
                       "routes": [{"instance_type": "car", "overlap": "200ms",
                                   "route": [{"at": 0, "network": "region-1"}, {"at": 0.5, "network": "region-2"},
                                             {"at": 1.5, "network": "region-1"}]}]}],
    },
}
CELL = "time_s,delay\n0,30ms\n60,30ms\n"  # region 2 is a cell 30 ms away (path delay), held for a minute


@pytest.fixture(scope="module")
def sdk(machine, tmp_path_factory):
    from FogifySDK import FogifySDK

    folder = tmp_path_factory.mktemp("model")
    (folder / "traces").mkdir()
    (folder / "traces" / "cell.csv").write_text(CELL)
    (folder / "docker-compose.yaml").write_text(yaml.safe_dump(COMPOSE))
    with real_api(tmp_path_factory.mktemp("data")) as (url, controller):
        client = FogifySDK(url, str(folder / "docker-compose.yaml"))
        client.deploy(timeout=300)
        yield client, controller
        client.undeploy(timeout=300)


def rtt(controller, source: str, target: str, network: str) -> float:
    emulation = controller.emulation
    address = emulation.plan.instance(target).interface(network).ip
    out = emulation.hosts[source].cmd(f"ping -n -c 6 -i 0.05 -W 1 {address}")
    times = [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]
    return statistics.median(times) if times else float("nan")


def trace_state(client, name: str) -> dict:
    return next(t for t in client.status()["traces"] if t["name"] == name)


def uplink_of(client, instance: str, network: str) -> str:
    return next(i for i in client.status()["instances"] if i["name"] == instance)["networks"][network]["uplink"]


def test_the_uploaded_trace_starts_with_the_deployment_and_obeys_its_actions(sdk):
    client, _ = sdk
    state = trace_state(client, "region-2")
    assert state["state"] == "running" and state["source"] == "traces/cell.csv" and state["values"] == {
        "delay_ms": 30.0}
    assert uplink_of(client, "edge-2.1", "region-2") == "50Mbit/s 15ms"  # half the path's 30 ms each way
    client.trace("pause", "region-2")
    assert trace_state(client, "region-2")["state"] == "paused"
    client.trace("resume")
    assert trace_state(client, "region-2")["state"] == "running"
    answer = client.trace("stop", "region-2")
    assert answer["traces"][0]["state"] == "stopped"
    assert uplink_of(client, "edge-2.1", "region-2") == "50Mbit/s 2ms"  # the network's own 4 ms path delay
    client.trace("start", "region-2")
    assert uplink_of(client, "edge-2.1", "region-2") == "50Mbit/s 15ms"
    client.trace(network="region-1", instance_type="edge-1", points=[{"time_s": 0, "jitter": "1ms"}],
                 name="wobble")
    assert "±" in uplink_of(client, "edge-1.1", "region-1")
    client.trace("stop", "wobble")
    annotations = client.get_annotations().annotations
    traced = annotations[annotations["annotation"] == "TRACE"]
    assert "Parameters: start (with the deployment)" in list(traced["params"])
    assert any(text.startswith("Parameters: pause region-2") for text in traced["params"])


def test_a_move_by_the_sdk_reaches_the_new_region_with_its_shaping_and_names(sdk):
    client, controller = sdk
    answer = client.move("car", to="region-2")
    new_ip = answer["instances"]["car.1"]["ip"]
    assert answer["instances"]["car.1"]["from"] == "region-1"
    # region-2's trace drives the car as soon as it arrives: 30 ms each way, an RTT of 60 ms
    assert uplink_of(client, "car.1", "region-2") == "50Mbit/s 15ms"
    assert 59 <= rtt(controller, "car.1", "edge-2.1", "region-2") < 63
    code, out = controller.emulation.hosts["edge-2.1"].dexec(["getent", "hosts", "car"])
    assert code == 0 and out.split()[0] == new_ip
    client.move("car", to="region-1", from_network="region-2", overlap=0.1)
    assert 7.9 <= rtt(controller, "car.1", "edge-1.1", "region-1") < 10


def test_a_scenarios_route_moves_the_device_on_the_servers_clock(sdk):
    client, controller = sdk
    start, end = client.run_scenario("drive")
    run = client.scenario_status("drive")
    moves = [a for a in run["actions"] if a["type"] == "move"]
    assert [a["result"] for a in moves] == ["OK", "OK"]
    assert [round(a["planned"] - run["start"], 1) for a in moves] == [0.5, 1.5]
    assert all(a["lateness_ms"] < 100 for a in moves)
    assert [i.network for i in controller.emulation.plan.instance("car.1").interfaces] == ["region-1"]
    assert wait_until(lambda: rtt(controller, "car.1", "edge-1.1", "region-1") < 10, timeout=5)
    annotations = client.get_annotations().annotations
    moved = annotations[annotations["annotation"] == "MOVE"]
    assert len(moved) >= 4  # two by the SDK, two by the route
    assert any("region-1 -> region-2, make-before-break" in text for text in moved["params"])
