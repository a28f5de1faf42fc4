"""Fogify users' scripts, unchanged, with Fogify's own SDK from PyPI (fogifysdk==0.0.3) against fogify-net.

The first test is the flow of a published database-benchmark project: deploy,
read each replica's container and address from `info()` (Fogify's Swarm task
objects), `docker exec` iperf3 and ping between them, undeploy. The second
goes through every call of fogify.md §3 once and checks each answer's shape
as the published SDK hands it to a script. The last is issue 18's sequence
(deploy, metrics, stress, scenario, undeploy, SIGTERM to the API, a new API
deploys at once), ten times in a row.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
import yaml

from .conftest import BASE_IMAGE, assert_clean, snapshot
from .published_sdk import ApiProcess, require_published_sdk, run_script

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

MODEL = {
    "version": "3.7",
    "services": {
        "db": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]},
        "web": {"image": BASE_IMAGE, "command": ["python3", "-m", "http.server", "8000"]},
    },
    "x-fogify": {
        "nodes": [{"name": "small", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000},
                                                     "memory": "256M"}}],
        "networks": [
            {"name": "lan", "bidirectional": {"bandwidth": "100Mbps", "latency": {"delay": "2ms"}}},
            {"name": "wan", "uplink": {"bandwidth": "20Mbps", "latency": {"delay": "5ms"}},
             "downlink": {"bandwidth": "20Mbps", "latency": {"delay": "5ms"}}},
        ],
        "topology": [
            {"node": "small", "service": "db", "label": "node", "replicas": 2, "networks": ["lan", "wan"]},
            {"node": "small", "service": "web", "label": "server", "replicas": 1, "networks": ["lan"]},
        ],
        "scenarios": [{"name": "short", "actions": [
            {"time": 1, "position": 0, "instance_type": "node", "instances": 2,
             "action": {"type": "network", "parameters": {
                 "network": "lan", "bidirectional": {"latency": {"delay": "10ms"}}}}},
            {"time": 1, "position": 1, "instance_type": "node", "action": "NOOP"},
        ]}],
    },
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    require_published_sdk()
    path = tmp_path_factory.mktemp("published-sdk")
    (path / "docker-compose.yaml").write_text(yaml.safe_dump(MODEL, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def api(workdir):
    before = snapshot()
    process = ApiProcess(workdir).start()
    yield process
    assert process.stop() == 0, process.log()
    assert_clean(before)


REAL_CLIENT = """
import subprocess
from FogifySDK import FogifySDK

fogify = FogifySDK(URL, "docker-compose.yaml")
deployed = fogify.deploy()
info = fogify.info()
ids = [info["fogify_node"][i]["Status"]["ContainerStatus"]["ContainerID"] for i in range(2)]
ips = [info["fogify_node"][i]["NetworksAttachments"][0]["Addresses"][0] for i in range(2)]
server_ip = ips[0].split("/")[0]
subprocess.run(["docker", "exec", ids[0], "iperf3", "-s", "-D", "-1"], check=True)
iperf = subprocess.run(["docker", "exec", ids[1], "iperf3", "-c", server_ip, "-t", "2", "-J"],
                       check=True, capture_output=True, text=True).stdout
ping = subprocess.run(["docker", "exec", ids[1], "ping", "-c", "3", "-i", "0.2", server_ip],
                      check=True, capture_output=True, text=True).stdout
undeployed = fogify.undeploy()
print(json.dumps({"deployed": deployed, "info": info, "ips": ips, "iperf": json.loads(iperf), "ping": ping,
                  "undeployed": undeployed, "after": fogify.info()}))
"""


def test_a_published_benchmark_script_runs_unchanged(api, workdir):
    out = run_script(REAL_CLIENT, workdir, URL=api.url)
    assert out["deployed"] == {"message": "The services are deployed ( {'node': 2, 'server': 1} )"}
    info = out["info"]
    assert sorted(info) == ["fogify_node", "fogify_server"]
    assert [t["Slot"] for t in info["fogify_node"]] == [1, 2]
    for task in info["fogify_node"] + info["fogify_server"]:
        assert task["Status"]["State"] == "running" and task["DesiredState"] == "running"
        assert task["Status"]["ContainerStatus"]["PID"] > 0 and task["ID"] and task["NodeID"]
        assert task["Spec"]["ContainerSpec"]["Image"] == BASE_IMAGE
    assert [a["Network"]["Spec"]["Name"] for a in info["fogify_node"][0]["NetworksAttachments"]] == ["lan", "wan"]
    assert [ip.rsplit("/", 1)[1] for ip in out["ips"]] == ["24", "24"] or all("/" in ip for ip in out["ips"])
    mbits = out["iperf"]["end"]["sum_received"]["bits_per_second"] / 1e6
    assert 60 < mbits < 105, mbits  # the lan's 100 Mbit/s, through the containers Docker names
    rtts = [float(x) for x in __import__("re").findall(r"time=([\d.]+) ms", out["ping"])]
    assert len(rtts) == 3 and min(rtts) >= 3.5  # 2 ms each way
    assert out["undeployed"] == {"message": "The 3 services are undeployed"}
    assert out["after"] == {}


EVERY_CALL = """
import datetime, sys, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from FogifySDK import FogifySDK
ExceptionFogifySDK = sys.modules["FogifySDK.FogifySDK"].ExceptionFogifySDK  # the package exports only the class

fogify = FogifySDK(URL, "docker-compose.yaml")
out = {"deploy": fogify.deploy()}

def frame(df):
    return {"columns": sorted(df.columns), "index": str(df.index.dtype), "name": df.index.name, "rows": len(df),
            "counts_sorted": list(df["count"]) == sorted(df["count"])}

time.sleep(3)
out["metrics"] = frame(fogify.get_metrics_from("node.1"))
time.sleep(2)
out["metrics_again"] = frame(fogify.get_metrics_from("node.1"))  # incremental: parses the last RFC 1123 stamp
out["metrics_all"] = sorted(fogify.get_metrics().data)
window = fogify.get_metrics(service="node.2", from_timestamp=datetime.datetime.now() - datetime.timedelta(hours=1),
                            to_timestamp=datetime.datetime.now() + datetime.timedelta(minutes=1)).data
out["metrics_window"] = sorted(window)

out["scale_up"] = fogify.horizontal_scaling_up("node")
out["count_up"] = len(fogify.info()["fogify_node"])
out["scale_down"] = fogify.horizontal_scaling_down("node")
out["count_down"] = len(fogify.info()["fogify_node"])
out["cpu"] = fogify.vertical_scaling("node", cpu="-20")
out["memory"] = fogify.vertical_scaling("node.1", memory="200M")
out["stress"] = fogify.stress("server", duration=2, cpu=50)
out["command"] = fogify.command("node.2", "touch /tmp/fgt-published")
out["network"] = fogify.update_network("node", "wan", {"uplink": {"latency": {"delay": "7ms"}},
                                                      "downlink": {"latency": {"delay": "7ms"}}})
links = fogify.update_link("lan", "node", "server", {"properties": {"latency": {"delay": "20ms"}}})
out["links"] = {k: (v if isinstance(v, dict) else repr(v)) for k, v in links.items()}
errors = {}
for name, call in {
    "unknown_label": lambda: fogify.command("nosuch", "true"),
    "unknown_network": lambda: fogify.update_network("node", "nonet", {"bidirectional": {"drop": "1%"}}),
    "bad_unit": lambda: fogify.update_network("node", "lan", {"bidirectional": {"bandwidth": "5Mbs"}}),
    "bad_memory": lambda: fogify.vertical_scaling("node", memory="lots"),
}.items():
    try:
        call()
        errors[name] = None
    except ExceptionFogifySDK as error:
        errors[name] = str(error)
out["errors"] = errors

start, stop = fogify.scenario_execution("short")
out["scenario"] = [type(start).__name__, (stop - start).total_seconds()]
annotations = fogify.get_annotations().annotations
out["annotations"] = {"columns": list(annotations.columns), "types": list(annotations["annotation"]),
                      "timestamp": annotations["timestamp"].iloc[0]}
fig, ax = plt.subplots()
fogify.plot_annotations(ax, start=start - datetime.timedelta(minutes=5), colors_gist=["gray"] * 50)
out["lines"] = len(ax.lines)
out["packets"] = list(fogify.get_network_packets_from("node.1").columns)
out["clean_annotations"] = fogify.clean_annotations()
out["clean_metrics"] = fogify.clean_metrics()
out["undeploy"] = fogify.undeploy()
out["info_after"] = fogify.info()
print(json.dumps(out, default=str))
"""


def test_every_call_of_the_published_sdk_gets_the_answer_shape_it_reads(api, workdir):
    out = run_script(EVERY_CALL, workdir, URL=api.url)
    assert out["deploy"]["message"].startswith("The services are deployed")
    metric_columns = {"count", "cpu", "cpu_util", "memory", "memory_util", "disk_bytes",
                      "network_rx_lan", "network_tx_lan", "network_rx_wan", "network_tx_wan"}
    for key in ("metrics", "metrics_again"):
        assert metric_columns <= set(out[key]["columns"]), out[key]
        assert out[key]["name"] == "timestamp" and out[key]["index"].startswith("datetime64")
        assert out[key]["counts_sorted"] and out[key]["rows"] >= 2
    assert out["metrics_again"]["rows"] > out["metrics"]["rows"]
    assert out["metrics_all"] == ["node.1", "node.2", "server.1"] and "node.2" in out["metrics_window"]
    assert out["scale_up"]["message"] == "OK" and out["count_up"] == 3
    assert out["scale_down"]["message"] == "OK" and out["count_down"] == 2
    for key in ("cpu", "memory", "stress", "command", "network"):
        assert out[key]["message"] == "OK", (key, out[key])
    assert out["links"] == {"node": {"message": "OK"}, "server": {"message": "OK"}}
    errors = out["errors"]
    assert "unknown" in errors["unknown_label"] and "nosuch" in errors["unknown_label"]
    assert "nonet" in errors["unknown_network"]
    assert "Mbs" in errors["bad_unit"] and "lots" in errors["bad_memory"]
    assert out["scenario"][0] == "datetime" and 2 <= out["scenario"][1] < 10
    assert out["annotations"]["columns"][:4] == ["timestamp", "annotation", "instance_name", "params"]
    assert {"H_SCALE_UP", "H_SCALE_DOWN", "V_SCALE", "STRESS", "COMMAND", "NETWORK"} <= set(
        out["annotations"]["types"])
    assert out["annotations"]["timestamp"].endswith(" GMT")
    assert out["lines"] >= 6
    assert out["clean_annotations"] == {"message": "Annotations are clear"}
    assert out["clean_metrics"] == {"message": "The metrics are empty now"}
    assert out["undeploy"] == {"message": "The 3 services are undeployed"} and out["info_after"] == {}


ISSUE_18 = """
from FogifySDK import FogifySDK

fogify = FogifySDK(URL, "docker-compose.yaml")
fogify.deploy()
fogify.get_metrics_from("node.1")
fogify.stress("server.1", cpu=70, duration=10)
fogify.scenario_execution()
if WAIT:
    print(json.dumps(fogify.undeploy()))
else:  # a script that asks for the undeploy and exits at once, its shell stopping the API right after
    import requests
    print(json.dumps(requests.delete(URL + "/topology/").json()))
"""


def test_undeploy_then_sigterm_then_an_immediate_redeploy_ten_times(workdir):
    """Issue 18: switch ports outlived an SDK undeploy and the API's exit, and the next deploy failed.

    Even cycles run the issue's sequence (the SDK's undeploy waits for zero
    instances, then SIGTERM); odd ones send SIGTERM while the teardown runs,
    which the API must finish before it exits. Each next cycle deploys at once
    with a new API.
    """
    before = snapshot()
    for cycle in range(10):
        wait = cycle % 2 == 0
        api = ApiProcess(workdir).start()
        try:
            out = run_script(ISSUE_18, workdir, URL=api.url, WAIT=wait)
        finally:
            code = api.stop(signal.SIGTERM)
        expected = "The 3 services are undeployed" if wait else "The topology is down."
        assert out["message"] == expected, (cycle, api.log())
        assert code == 0, (cycle, api.log())
        left = snapshot()  # at once: the API has exited, so nothing of the deployment may remain
        assert left["links"] == before["links"], (cycle, sorted(left["links"] ^ before["links"]))
        assert left["containers"] == before["containers"], (cycle, sorted(left["containers"]))
        for kind in ("processes", "iptables", "nft"):  # the rules are the last thing a teardown removes
            assert left[kind] == before[kind], (cycle, kind, sorted(left[kind] ^ before[kind]))
        assert not subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True,
                                  text=True).stdout.count("fgn-"), cycle
    assert_clean(before)
