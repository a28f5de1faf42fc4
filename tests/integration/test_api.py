"""The REST API against a real deployment: every route, good and bad input, and each action's effect."""

from __future__ import annotations

import re
import time

import pytest
import requests
import yaml

from fogify_net.host.cgroups import cgroup_dirs
from FogifySDK import instance_names

from .conftest import BASE_IMAGE, iperf, real_api, wait_until, without_fidelity

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

MODEL = {
    "version": "3.7",
    "services": {
        "web": {"image": BASE_IMAGE, "command": ["python3", "-m", "http.server", "8000"]},
        "box": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]},
    },
    "x-fogify": {
        "nodes": [
            {"name": "small", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "256M"}},
        ],
        "networks": [
            {"name": "lan", "bidirectional": {"bandwidth": "50Mbps", "latency": {"delay": "2ms"}}},
            {"name": "wan", "uplink": {"bandwidth": "10Mbps", "latency": {"delay": "5ms"}},
             "downlink": {"bandwidth": "10Mbps", "latency": {"delay": "5ms"}}, "capacity": 3},
        ],
        "topology": [
            {"node": "small", "service": "web", "label": "server", "replicas": 1, "networks": ["lan", "wan"]},
            {"node": "small", "service": "box", "label": "client", "replicas": 2, "networks": ["lan"]},
            {"node": "small", "service": "box", "label": "edge", "replicas": 1, "networks": ["wan"]},
        ],
        "scenarios": [{"name": "quick", "actions": [
            {"time": 1, "position": 0, "instance_type": "client.1", "instances": 1,
             "action": {"type": "network", "parameters": {"network": "lan", "uplink": {"latency": {"delay": "20ms"}}}}},
            {"time": 1, "position": 1, "instance_type": "client", "action": {"type": "noop"}},
            {"time": 0.5, "position": 2, "instance_type": "client", "instances": 1,
             "action": {"type": "scale-out", "parameters": {"num-of-instances": 1}}},
        ]}],
    },
}


@pytest.fixture(scope="module")
def api(machine, tmp_path_factory):
    """A real API server on an ephemeral port, with its controller."""
    with real_api(tmp_path_factory.mktemp("data")) as served:
        yield served


@pytest.fixture(scope="module")
def deployed(api):
    url, controller = api
    response = requests.post(f"{url}/topology/", files={"file": ("model.yaml", yaml.safe_dump(MODEL))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "OK"
    assert {k: v["deploy"]["replicas"] for k, v in body["swarm"]["services"].items()} == {
        "server": 1, "client": 2, "edge": 1}

    def progress():
        r = requests.get(f"{url}/topology/")
        return r if r.headers["X-Fogify-Status"] != "deploying" else None

    final = wait_until(progress, timeout=60, interval=0.2)
    assert final.headers["X-Fogify-Status"] == "running", final.text
    assert instance_names(final.json()) == {"client": ["client.1", "client.2"], "edge": ["edge.1"],
                                            "server": ["server.1"]}
    return url, controller


def act(url: str, kind: str, **params) -> requests.Response:
    return requests.post(f"{url}/actions/{kind}/", json={"params": params})


def host(controller, name):
    return controller.emulation.hosts[name]


def ip(controller, name, network):
    return str(controller.emulation.plan.instance(name).interface(network).ip)


def rtt(controller, src: str, dst: str, network: str, count: int = 5) -> float:
    out = host(controller, src).cmd(f"ping -c {count} -i 0.05 -q {ip(controller, dst, network)}")
    return float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))


# --- deploy errors -------------------------------------------------------------------------------


def test_bad_models_are_400_naming_the_field_and_nothing_is_deployed(api):
    url, controller = api
    bad = yaml.safe_load(yaml.safe_dump(MODEL))
    bad["x-fogify"]["networks"][0]["bidirectional"]["bandwidth"] = "50Mbs"
    r = requests.post(f"{url}/topology/", files={"file": ("m.yaml", yaml.safe_dump(bad))})
    assert r.status_code == 400
    assert r.json()["message"].startswith("x-fogify.networks[0].bidirectional.bandwidth: unknown rate unit")
    assert r.headers["Content-Type"] == "application/json"
    missing_image = yaml.safe_load(yaml.safe_dump(MODEL))
    missing_image["services"]["box"]["image"] = "no-such-image:never"
    r = requests.post(f"{url}/topology/", files={"file": ("m.yaml", yaml.safe_dump(missing_image))})
    assert r.status_code == 400 and r.json()["field"] == "services.box.image"
    r = requests.post(f"{url}/topology/", files={"file": ("m.yaml", "services: [")})
    assert r.status_code == 400 and "not valid YAML" in r.json()["message"]
    assert controller.status == "idle" and requests.get(f"{url}/topology/").json() == {}
    assert requests.delete(f"{url}/topology/").status_code == 409
    assert act(url, "network", instance_type="client", network="lan", uplink={}).status_code == 409


# --- the deployment ------------------------------------------------------------------------------


def test_deploy_reports_status_and_refuses_a_second_deploy(deployed):
    url, controller = deployed
    status = requests.get(f"{url}/status/").json()
    assert status["status"] == "running"
    assert status["shaping"]["mechanism"] in ("netem", "userspace")
    names = {i["name"]: i for i in status["instances"]}
    assert set(names) == {"server.1", "client.1", "client.2", "edge.1"}
    assert names["client.1"]["cpus"] == pytest.approx(0.5)
    assert set(names["server.1"]["networks"]) == {"lan", "wan"}
    r = requests.post(f"{url}/topology/", files={"file": ("m.yaml", yaml.safe_dump(MODEL))})
    assert r.status_code == 409 and r.json()["message"] == "The system has a deployed instance."


def test_routes_need_their_trailing_slash_and_answer_json_errors(deployed):
    url, _ = deployed
    r = requests.get(f"{url}/topology", allow_redirects=False)
    assert r.status_code == 308 and r.headers["Location"].endswith("/topology/")
    r = requests.get(f"{url}/no-such-route/")
    assert r.status_code == 404 and "message" in r.json()
    assert requests.put(f"{url}/topology/").status_code == 405
    assert act(url, "teleport", instance_type="client").status_code == 404
    r = requests.post(f"{url}/actions/network/", json={"not-params": {}})
    assert r.status_code == 400 and r.json()["message"].startswith("params:")


def test_unknown_targets_are_404_and_bad_parameters_400(deployed):
    url, _ = deployed
    assert act(url, "stress", instance_type="ghost", action={"cpu": 10, "duration": 1}).status_code == 404
    assert act(url, "stress", instance_type="client.9", action={"cpu": 10, "duration": 1}).status_code == 404
    r = act(url, "network", instance_type="client", network="nowhere", uplink={"bandwidth": "1Mbps"})
    assert r.status_code == 404 and "unknown network" in r.json()["message"]
    r = act(url, "vertical_scaling", instance_type="client", action="gpu", value="+10")
    assert r.status_code == 400 and "params" in r.json()["message"]
    r = act(url, "network", instance_type="client", network="lan", uplink={"bandwidth": "fast"})
    assert r.status_code == 400 and r.json()["field"] == "params.uplink.bandwidth"


def test_metrics_have_fogify_columns_and_counters_only_grow(deployed):
    url, _ = deployed
    host_records = wait_until(lambda: (lambda d: d if len(d.get("server.1", [])) >= 3 else None)(
        requests.get(f"{url}/monitorings/", params={"service": "server.1"}).json()), timeout=15)
    records = host_records["server.1"]
    for key in ("cpu", "cpu_util", "memory", "memory_util", "network_rx_lan", "network_tx_lan",
                "network_rx_wan", "network_tx_wan", "count", "timestamp", "ts"):
        assert key in records[-1], key
    assert re.match(r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$", records[-1]["timestamp"])
    for a, b in zip(records, records[1:]):
        assert b["count"] > a["count"] and b["cpu"] >= a["cpu"] and b["network_rx_lan"] >= a["network_rx_lan"]
    since = requests.get(f"{url}/monitorings/", params={"from_timestamp": records[-2]["ts"]}).json()
    assert all(r["ts"] > records[-2]["ts"] for rs in since.values() for r in rs)
    assert requests.get(f"{url}/monitorings/", params={"service": "nobody.1"}).status_code == 404
    assert requests.get(f"{url}/monitorings/", params={"from_timestamp": "yesterday"}).status_code == 400


def test_network_action_changes_the_rate_in_place_and_persists(deployed):
    url, controller = deployed
    server, edge = host(controller, "server.1"), host(controller, "edge.1")
    assert act(url, "network", instance_type="edge", instances=1, network="wan",
               uplink={"bandwidth": "3Mbps"}).json() == {"message": "OK", "instances": ["edge.1"]}
    measured = iperf(edge, server, ip(controller, "server.1", "wan"), seconds=4)
    assert measured == pytest.approx(3, rel=0.1), f"{measured:.2f} Mbit/s after the change"
    # A later change of another field keeps the rate (Fogify reverted it).
    change = {"network": "wan", "uplink": {"latency": {"delay": "6ms"}}}
    assert act(url, "network", instance_type="edge", network=change).ok
    interface = controller.emulation.plan.instance("edge.1").interface("wan")
    assert interface.uplink.rate == 3_000_000 and interface.uplink.delay == pytest.approx(0.006)
    measured = iperf(edge, server, ip(controller, "server.1", "wan"), seconds=3)
    assert measured == pytest.approx(3, rel=0.1)


def test_vertical_scaling_changes_the_cgroup(deployed):
    url, controller = deployed
    client = host(controller, "client.1")
    quota = cgroup_dirs(client.cpid)["cpu"] / "cpu.cfs_quota_us"
    assert int(quota.read_text()) == 50_000
    assert act(url, "vertical_scaling", instance_type="client.1", instances=1, action="cpu", value="+20").ok
    assert int(quota.read_text()) == 60_000
    assert act(url, "vertical_scaling", instance_type="client.1", action={"action": "memory", "value": "192M"}).ok
    memory = cgroup_dirs(client.cpid)["memory"] / "memory.limit_in_bytes"
    assert int(memory.read_text()) == 192 * 2**20


def test_stress_loads_the_allocation_without_tools_in_the_image(deployed):
    url, controller = deployed
    edge = host(controller, "edge.1")
    usage = cgroup_dirs(edge.cpid)["cpuacct"] / "cpuacct.usage"
    assert act(url, "stress", instance_type="edge", instances=1, action={"cpu": 60, "duration": 6}).ok
    time.sleep(1.5)
    first, t0 = int(usage.read_text()), time.monotonic()
    time.sleep(3)
    cpus = (int(usage.read_text()) - first) / 1e9 / (time.monotonic() - t0)
    assert cpus == pytest.approx(0.5 * 0.6, abs=0.08), f"{cpus:.3f} CPUs under a 60% stress of 0.5 CPU"


def test_command_waits_and_returns_output(deployed):
    url, _ = deployed
    r = act(url, "command", instance_type="client", action={"command": "sh -c 'echo $FOGIFY_INSTANCE; exit 3'"},
            wait=True)
    results = r.json()["results"]
    assert results == {"client.1": {"exit_code": 3, "output": "client.1\n", "timed_out": False},
                       "client.2": {"exit_code": 3, "output": "client.2\n", "timed_out": False}}


def test_link_down_cuts_and_link_up_restores(deployed):
    url, controller = deployed
    client = host(controller, "client.2")
    target = ip(controller, "server.1", "lan")
    assert "bytes from" in client.cmd(f"ping -c 1 -W 1 {target}")
    assert act(url, "link_down", instance_type="client.2", network="lan").ok
    assert "bytes from" not in client.cmd(f"ping -c 2 -i 0.2 -W 1 {target}")
    assert act(url, "link_up", instance_type="client.2", network="lan").ok
    assert wait_until(lambda: "bytes from" in client.cmd(f"ping -c 1 -W 1 {target}"), timeout=5)


def test_partition_and_heal(deployed):
    url, controller = deployed
    server, client = host(controller, "server.1"), host(controller, "client.1")
    target = ip(controller, "client.1", "lan")
    assert act(url, "partition", **{"from": "server", "to": "client"}).ok
    assert "bytes from" not in server.cmd(f"ping -c 2 -i 0.2 -W 1 {target}")
    assert "bytes from" not in client.cmd(f"ping -c 1 -W 1 {ip(controller, 'server.1', 'lan')}")
    assert act(url, "heal", **{"from": "server", "to": "client"}).ok
    assert "bytes from" in server.cmd(f"ping -c 2 -i 0.2 -W 1 {target}")


def test_scale_out_is_reachable_shaped_and_named_then_scale_in(deployed):
    url, controller = deployed
    r = act(url, "horizontal_scaling", instance_type="client", instances=1, type="up")
    assert r.json()["instances"] == ["client.3"]
    new = host(controller, "client.3")
    assert "bytes from" in new.cmd(f"ping -c 1 -W 1 {ip(controller, 'server.1', 'lan')}")
    assert new.cmd("tc qdisc show dev eth0").startswith("qdisc htb")
    code, out = host(controller, "server.1").dexec(["getent", "hosts", "client.3"])
    assert code == 0 and out.split()[0] == ip(controller, "client.3", "lan")
    assert "client.3" in instance_names(requests.get(f"{url}/topology/").json())["client"]
    r = act(url, "horizontal_scaling", instance_type="client", instances=1, type="down")
    assert r.json()["instances"] == ["client.3"]
    assert instance_names(requests.get(f"{url}/topology/").json())["client"] == ["client.1", "client.2"]
    assert host(controller, "server.1").dexec(["getent", "hosts", "client.3"])[0] != 0


def test_scale_out_beyond_a_networks_capacity_is_409_and_changes_nothing(deployed):
    url, controller = deployed
    before = requests.get(f"{url}/status/").json()["instances"]
    r = act(url, "horizontal_scaling", instance_type="edge", instances=2, type="up")  # wan: 2 of 3 taken
    assert r.status_code == 409
    assert r.json()["message"] == ("network 'wan' has capacity 3 and holds 2 instances: "
                                   "2 more of 'edge' would make 4")
    assert requests.get(f"{url}/status/").json()["instances"] == before
    assert [i.name for i in controller.emulation.plan.instances_of("edge")] == ["edge.1"]
    assert not [a for a in requests.get(f"{url}/annotations/").json() if a["instance_name"] == "edge"
                and a["annotation"].startswith("H_SCALE")]


def test_crash_and_restart_rebuild_links_and_shaping(deployed):
    url, controller = deployed
    assert act(url, "crash", instance_type="edge.1").ok
    assert controller.emulation.hosts["edge.1"].container.wait(timeout=10)["StatusCode"] != 0
    assert act(url, "restart", instance_type="edge.1").ok
    edge = host(controller, "edge.1")
    assert "bytes from" in edge.cmd(f"ping -c 2 -i 0.2 -W 1 {ip(controller, 'server.1', 'wan')}")
    assert "rate 3Mbit" in edge.cmd("tc class show dev eth0")  # the persisted network change is back


def test_server_side_scenario_fires_on_time_and_is_annotated(deployed):
    url, controller = deployed
    requests.delete(f"{url}/annotations/")
    r = requests.post(f"{url}/scenarios/quick/")
    assert r.status_code == 200
    start, end = r.json()["start"], r.json()["end"]
    assert end - start == pytest.approx(2.5)
    assert requests.post(f"{url}/scenarios/quick/").status_code == 409
    run = wait_until(lambda: (lambda s: s if s["state"] != "running" else None)(
        requests.get(f"{url}/scenarios/quick/").json()), timeout=20)
    assert run["state"] == "finished", run
    for action in run["actions"]:
        assert action["result"] == "OK"
        assert 0 <= action["lateness_ms"] < 100, action
    assert rtt(controller, "client.1", "server.1", "lan") == pytest.approx(20 + 1 + 1, abs=3)
    annotations = requests.get(f"{url}/annotations/").json()
    annotations = [a for a in annotations if not a["annotation"].startswith("FIDELITY_")]  # the machine's load
    assert [a["annotation"] for a in annotations] == ["NETWORK", "H_SCALE_UP"]
    assert annotations[0]["ts"] < annotations[1]["ts"]
    assert requests.post(f"{url}/scenarios/nothing/").status_code == 404


def test_undeploy_through_the_api(deployed):
    url, controller = deployed
    assert requests.delete(f"{url}/topology/").json() == {"message": "The topology is down."}
    assert wait_until(lambda: controller.status == "idle", timeout=60)
    assert requests.get(f"{url}/topology/").json() == {}
    kinds = without_fidelity([a["annotation"] for a in requests.get(f"{url}/annotations/").json()])
    assert kinds[-2:] == ["STOP", "UNDEPLOY"]
