"""Action latency: from the REST call to its effect in the kernel, p50 and p95 over 20 calls.

A real API (in this process, on an ephemeral port) with a small deployment;
each call's clock stops when the effect is observed from outside: the HTB
class rate on the instance's interface (network change), the CFS quota in
the cgroup (vertical scaling), a ping answered by the new replica from an old
one (scale-out of one replica). Prints a Markdown table.

    sudo /opt/fogify-net/venv/bin/python bench/actions.py [--calls 20] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402

from fogify_net.controller import Controller  # noqa: E402
from fogify_net.host.cgroups import cgroup_dirs  # noqa: E402
from fogify_net.host.kernel import in_netns, run  # noqa: E402

IMAGE = "fogify-net/base:latest"
MODEL = {
    "services": {"app": {"image": IMAGE, "command": ["sleep", "infinity"]}},
    "x-fogify": {
        "nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "128M"}}],
        "networks": [{"name": "lan", "bidirectional": {"bandwidth": "20Mbps", "latency": {"delay": "2ms"}}}],
        "topology": [{"node": "n", "service": "app", "label": "web", "replicas": 2, "networks": ["lan"]}],
    },
}


def until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the effect did not show")
        time.sleep(0.0005)


def timed(call, check) -> float:
    began = time.perf_counter()
    call()
    until(check)
    return (time.perf_counter() - began) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--markdown")
    args = parser.parse_args()
    from werkzeug.serving import make_server

    from fogify_net_api import create_app

    with machine_lock(), tempfile.TemporaryDirectory() as data:
        controller = Controller(data_dir=data, host_mhz=2000)
        server = make_server("127.0.0.1", 0, create_app(controller), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            requests.post(f"{url}/topology/", files={"file": ("m.yaml", yaml.safe_dump(MODEL))}).raise_for_status()
            until(lambda: controller.status == "running", timeout=120)
            rows = measure(url, controller, args.calls)
        finally:
            if controller.status not in ("idle", "error"):
                controller.undeploy(wait=True)
            server.shutdown()
            controller.close()
    table = markdown_table(["action (REST call -> kernel effect)", "calls", "p50 ms", "p95 ms", "max ms"], rows)
    emit(f"### Action latency\n\n{table}\n{machine_line()}\n", args.markdown)
    return 0


def measure(url: str, controller: Controller, calls: int) -> list[list]:
    def act(kind: str, **params) -> None:
        requests.post(f"{url}/actions/{kind}/", json={"params": params}).raise_for_status()

    emulation = controller.emulation
    web = emulation.hosts["web.1"]
    rows = []

    network = []
    for i in range(calls):
        rate = 5 + i % 2 * 5  # 5, 10, 5, ... Mbit/s
        expected = f"rate {rate}Mbit "
        network.append(timed(
            lambda rate=rate: act("network", instance_type="web.1", network="lan", uplink={"bandwidth": f"{rate}Mbps"}),
            lambda expected=expected: expected in run(in_netns(web.cpid, ["tc", "class", "show", "dev", "eth0"]))))
    rows.append(["network (uplink rate)", calls, *_stats(network)])

    quota_file = cgroup_dirs(web.cpid)["cpu"] / "cpu.cfs_quota_us"
    vertical = []
    for i in range(calls):
        cpus = 0.3 + i % 2 * 0.2
        vertical.append(timed(
            lambda cpus=cpus: act("vertical_scaling", instance_type="web.1", action="cpu", value=str(cpus)),
            lambda cpus=cpus: int(quota_file.read_text()) == round(cpus * 100_000)))
    rows.append(["vertical_scaling (cpu quota)", calls, *_stats(vertical)])

    scale = []
    for _ in range(calls):
        def reachable() -> bool:
            new = emulation.plan.instance("web.3")
            return new is not None and "bytes from" in web.cmd(f"ping -c 1 -W 0.2 {new.interface('lan').ip}")

        scale.append(timed(lambda: act("horizontal_scaling", instance_type="web", instances=1, type="up"), reachable))
        act("horizontal_scaling", instance_type="web", instances=1, type="down")
    rows.append(["horizontal_scaling up 1 (new replica answers a ping)", calls, *_stats(scale)])
    return rows


def _stats(values: list[float]) -> list[str]:
    return [f"{statistics.median(values):.1f}", f"{percentile(values, 95):.1f}", f"{max(values):.1f}"]


if __name__ == "__main__":
    sys.exit(main())
