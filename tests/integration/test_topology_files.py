"""The ready topologies as a user deploys them: `fogify-net deploy topologies/<name>` through the API daemon,
then `fogify-net cli`, `fogify-net action`, `fogify-net scenario run` and the SDK on the running deployment.

Each topology is deployed small (its parameters), one pair's RTT is measured in the CLI and held
against the sum `--dry-run` prints, and nothing is left after `fogify-net undeploy`.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

import pytest

from fogify_net.compile.paths import reachable_address, trace
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.containernet.load import load_topology
from fogify_net.model import load_model, parse_model

from .conftest import snapshot
from .test_containernet import assert_clean

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

URL = "http://127.0.0.1:5079"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = {  # name -> (params, the pair pinged, CLI commands whose output must say "0% dropped", or none)
    "three-tier-fog": ([], ("sensor-1.1", "edge-1.1"), None),
    "city": (["regions=2", "cars=1"], ("cars-2.1", "cloud.1"), None),
    "tree": (["depth=2", "fanout=2", "delay=3ms"], ("h1", "h4"), "pingall"),
    "router-chain": (["routers=3"], ("ha-1", "hb-1"), "pingall"),
    "linear": (["k=3", "delay=4ms", "switch_bw=20"], ("h1", "h3"), "pingall"),
}


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "FOGIFY_URL": URL, "FOGIFY_RUN_DIR": str(tmp_path / "run"),
           "FOGIFY_LOG_DIR": str(tmp_path / "log"), "FOGIFY_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str, check: bool = True) -> str:
        result = subprocess.run([sys.executable, "-m", "fogify_net.cli", *args], capture_output=True, text=True,
                                env=env, timeout=300, cwd=ROOT)
        if check:
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout + result.stderr

    yield run
    run("undeploy", check=False)


def declared_rtt_ms(name: str, params: list[str], pair: tuple[str, str]) -> float:
    path = os.path.join(ROOT, "topologies", name)
    if os.path.exists(path + ".py"):
        from fogify_net.containernet.load import parse_params

        model = parse_model(load_topology(path + ".py", parse_params(params))[0])
    else:
        model = load_model(path + ".yaml")
    plan = compile_model(model, HostFacts(cpu_mhz=2000, cpus=2, memory=2**34))
    a, b = plan.instance(pair[0]), plan.instance(pair[1])
    there, back = trace(plan, a, reachable_address(plan, a, b)), trace(plan, b, reachable_address(plan, b, a))
    assert there.error is None and back.error is None
    return 1000 * (there.delay + back.delay)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_ready_topology_deploys_from_the_command_line_and_measures_as_its_dry_run_says(name, cli, tmp_path):
    params, (source, target), check = CASES[name]
    options = [arg for p in params for arg in ("--param", p)]
    before = snapshot()
    dry = cli("deploy", "--dry-run", f"topologies/{name}", *options)
    expected = declared_rtt_ms(name, params, (source, target))
    row = next(line for line in dry.splitlines() if re.match(rf"{re.escape(source)}\s+{re.escape(target)}\s", line))
    assert f"{expected:g}ms" in row.split()[6]  # the RTT column is the sum of both ways' hops
    out = cli("deploy", f"topologies/{name}", *options)
    assert "status: running" in out
    script = tmp_path / "commands"
    script.write_text(f"{check or ''}\n{source} ping -n -c 10 -i 0.2 {target}\n")
    shell = cli("cli", "--script", str(script))
    if check:
        assert " 0% dropped" in shell, shell[-2000:]
    values = [float(v) for v in re.findall(r"time=([\d.]+) ms", shell)[-10:]]
    measured = statistics.median(values)
    print(f"{name}: {source} -> {target} RTT {measured:.2f} ms, dry-run sum {expected:g} ms")
    assert len(values) >= 9 and expected <= measured <= expected * 1.03 + 2.5
    cli("undeploy")
    assert_clean(before)


def test_actions_scenarios_and_the_sdk_work_on_a_python_topology(cli, tmp_path):
    from FogifySDK import FogifySDK

    before = snapshot()
    cli("deploy", "topologies/router-chain", "--param", "routers=2")
    script = tmp_path / "commands"
    script.write_text("nodes\nnet\ndump\niperf ha-1 hb-1\nlink r1 hop-1 down\nha-1 ping -n -c 1 -W 1 hb-1\n"
                      "link r1 hop-1 up\nha-1 ping -n -c 2 -W 2 hb-1\n")
    shell = cli("cli", "--script", str(script))
    assert re.search(r"available nodes are: \n.*ha-1 hb-1 hop-1 lan-a lan-b r1 r2", shell), shell[-3000:]
    assert "r1 r1-eth0:lan-a-eth" in shell or "r1 eth0:" in shell, shell[-3000:]  # net
    assert "<ContainerNode r2: " in shell, shell[-3000:]  # dump
    rate = float(re.search(r"\*\*\* Results: \['([\d.]+) Mbits/sec'", shell).group(1))
    print(f"router-chain (2 routers): iperf ha-1 -> hb-1 {rate:.2f} Mbit/s in the CLI (narrowest hop 20)")
    assert 0.85 * 20 <= rate <= 20.2
    assert "1 packets transmitted, 0 received" in shell and "2 packets transmitted, 2 received" in shell, shell
    answer = cli("action", "network", "instance_type=r1", "network=hop-1", "uplink.latency.delay=30ms")
    assert '"r1"' in answer
    assert "finished" in cli("scenario", "run", "cut-hop-1")
    sdk = FogifySDK(URL)
    names = {instance["name"] for instance in sdk.status()["instances"]}
    assert names == {"r1", "r2", "ha-1", "hb-1"}  # instances named by their host names
    sdk.link_down("r2", "hop-1")
    sdk.link_up("r2", "hop-1")
    annotations = sdk.get_annotations().annotations
    assert {"NETWORK", "LINK_DOWN", "LINK_UP"} <= set(annotations["annotation"])
    deadline = time.monotonic() + 10
    while len(sdk.get_metrics_from("ha-1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    metrics = sdk.get_metrics_from("ha-1")
    assert len(metrics) >= 2 and "network_rx_lan-a" in metrics.columns
    cli("undeploy")
    assert_clean(before)
