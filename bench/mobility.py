"""Mobility: handover latency over 20 moves, and how late trace steps are applied.

Handover. A real API (in this process) with a car on r1 and a responder on
each of r1 and r2; one ICMP prober in the car sends to both responders every
2 ms for the whole run. For each `POST /actions/move/`: `reachable` is from
the call to the first answered probe on the new network, `call` the REST
call's own time, `silence` the longest time without any answered probe (to
either network) around the move: break-before-make shows its gap there,
make-before-break (overlap 200 ms) none. The floor is the same kernel work
without fogify-net (delete the old veth pair, make the new one on the other
bridge, address it; one `ip -batch` each side) on scratch namespaces and
bridges (`fgt*`), timed to the first answered ping the same way.

Trace steps. A linear trace at 100 ms steps on a network of N instances (2N
links shaped per direction; N = 4 and 40 by default) and on one instance's link, for each property
(rate: tc on both ends; delay: the delay line's queues; loss: the nftables
table); lateness is applied minus planned time of each step (the player
reshapes only the traced links). The baseline is one full reshape (every
link compared, as before traces) for the same change, timed in the same run.

    sudo /opt/fogify-net/venv/bin/python bench/mobility.py [--moves 20] [--steps 100] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402

from fogify_net.controller import Controller  # noqa: E402

PROBE = HERE.parent / "tests" / "support" / "probe.py"
IMAGE = "fogify-net/base:latest"
NODE = {"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "128M"}}
HANDOVER = {
    "services": {"app": {"image": IMAGE, "command": ["sleep", "infinity"]}},
    "x-fogify": {
        "nodes": [NODE],
        "networks": [{"name": "r1", "bidirectional": {"bandwidth": "100Mbps"}},
                     {"name": "r2", "bidirectional": {"bandwidth": "100Mbps"}}],
        "topology": [{"node": "n", "service": "app", "label": "car", "networks": ["r1"]},
                     {"node": "n", "service": "app", "label": "e1", "networks": ["r1"]},
                     {"node": "n", "service": "app", "label": "e2", "networks": ["r2"]}],
    },
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def stats(values: list[float]) -> list[str]:
    return [f"{statistics.median(values):.1f}", f"{percentile(values, 95):.1f}", f"{max(values):.1f}"]


# --- handover ------------------------------------------------------------------------------------


def answered_times(result: dict, target: str) -> list[float]:
    sent = dict((seq, t) for seq, t in result["sent"][target])
    return sorted(sent[seq] for seq, _ in result["replies"][target] if seq in sent)


def handover(moves: int) -> list[list]:
    from werkzeug.serving import make_server

    from fogify_net_api import create_app

    rows = []
    with tempfile.TemporaryDirectory() as data:
        controller = Controller(data_dir=data, host_mhz=2000)
        server = make_server("127.0.0.1", 0, create_app(controller), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            requests.post(f"{url}/topology/", files={"file": ("m.yaml", yaml.safe_dump(HANDOVER))}).raise_for_status()
            deadline = time.monotonic() + 120
            while controller.status != "running" and time.monotonic() < deadline:
                time.sleep(0.1)
            emulation = controller.emulation
            targets = {net: str(emulation.plan.instance(f"e{net[-1]}.1").interfaces[0].ip) for net in ("r1", "r2")}
            for overlap in (0, 0.2):
                rows.append(_moves(url, emulation, targets, moves, overlap))
        finally:
            if controller.status not in ("idle", "error"):
                controller.undeploy(wait=True)
            server.shutdown()
            controller.close()
    return rows


def _moves(url: str, emulation, targets: dict[str, str], moves: int, overlap: float) -> list:
    period = 0.6 + overlap
    probe = emulation.hosts["car.1"].popen(
        ["python3", str(PROBE), "--interval", "0.002", "--duration", str(1 + moves * period), *targets.values()],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    calls = []
    for i in range(moves):
        to = "r2" if i % 2 == 0 else "r1"
        began = time.time()
        requests.post(f"{url}/actions/move/", json={"params": {"instance_type": "car", "to": to, "overlap": overlap}}
                      ).raise_for_status()
        calls.append((began, time.time(), to))
        time.sleep(max(0.0, began + period - time.time()))
    result = json.loads(probe.communicate(timeout=60)[0])
    reachable, call, silence = [], [], []
    union = sorted(t for target in targets.values() for t in answered_times(result, target))
    for began, ended, to in calls:
        first = next((t for t in answered_times(result, targets[to]) if t >= began), None)
        reachable.append(((first or float("inf")) - began) * 1000)
        call.append((ended - began) * 1000)
        window = [t for t in union if began - 0.05 <= t <= ended + 0.1]
        silence.append(max((b - a for a, b in zip(window, window[1:])), default=0.0) * 1000)
    kind = "break-before-make" if not overlap else f"make-before-break, overlap {overlap * 1000:.0f} ms"
    return [f"move ({kind})", moves, *stats(reachable), stats(call)[0], stats(silence)[0], stats(silence)[2]]


def floor(moves: int) -> list:
    """The same kernel work without fogify-net: scratch namespaces fgtm-*, bridges fgtmb1/fgtmb2.

    Docker's FORWARD policy drops bridged frames (bridge netfilter is on): the scratch bridges get
    an ACCEPT of their own for the run, as fogify-net's bridges do.
    """
    from fogify_net.host.kernel import iptables_ensure, iptables_remove

    names = ["fgtm-car", "fgtm-r1", "fgtm-r2"]
    accept = ("filter", "FORWARD", "-i fgtmb+ -o fgtmb+ -m comment --comment fgt-bench -j ACCEPT")
    iptables_ensure(*accept, position=1)

    def sh(*argv: str, stdin: str | None = None) -> None:
        subprocess.run(list(argv), input=stdin, text=True, check=True, capture_output=True)

    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
        batch = ["link add fgtmb1 type bridge forward_delay 0 stp_state 0", "link set fgtmb1 up",
                 "link add fgtmb2 type bridge forward_delay 0 stp_state 0", "link set fgtmb2 up",
                 "link add fgtmr1 type veth peer name eth0 netns fgtm-r1", "link set fgtmr1 master fgtmb1 up",
                 "link add fgtmr2 type veth peer name eth0 netns fgtm-r2", "link set fgtmr2 master fgtmb2 up",
                 "link add fgtmc0 type veth peer name eth0 netns fgtm-car", "link set fgtmc0 master fgtmb1 up"]
        sh("ip", "-batch", "-", stdin="\n".join(batch) + "\n")
        for ns, address in (("fgtm-r1", "10.251.1.2/24"), ("fgtm-r2", "10.251.2.2/24"), ("fgtm-car", "10.251.1.9/24")):
            sh("ip", "-n", ns, "-batch", "-", stdin=f"addr add {address} dev eth0\nlink set eth0 up\nlink set lo up\n")
        probe = subprocess.Popen(["ip", "netns", "exec", "fgtm-car", "python3", str(PROBE), "--interval", "0.002",
                                  "--duration", str(1 + moves * 0.5), "10.251.1.2", "10.251.2.2"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        calls = []
        for i in range(moves):
            to = 2 if i % 2 == 0 else 1
            began = time.time()
            sh("ip", "-batch", "-", stdin=f"link del fgtmc0\nlink add fgtmc0 type veth peer name eth0 netns fgtm-car\n"
                                          f"link set fgtmc0 master fgtmb{to} up\n")
            sh("ip", "-n", "fgtm-car", "-batch", "-", stdin=f"addr add 10.251.{to}.9/24 dev eth0\nlink set eth0 up\n")
            calls.append((began, f"10.251.{to}.2"))
            time.sleep(max(0.0, began + 0.5 - time.time()))
        result = json.loads(probe.communicate(timeout=60)[0])
        reachable = []
        for began, target in calls:
            first = next((t for t in answered_times(result, target) if t >= began), None)
            reachable.append(((first or float("inf")) - began) * 1000)
        return ["floor: the kernel work alone (break-before-make)", moves, *stats(reachable), "-", "-", "-"]
    finally:
        iptables_remove(*accept)
        subprocess.run(["ip", "-batch", "-"], input="link del fgtmb1\nlink del fgtmb2\nlink del fgtmc0\n"
                       "link del fgtmr1\nlink del fgtmr2\n", text=True, capture_output=True)
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --- trace steps -----------------------------------------------------------------------------------


def trace_steps(steps: int, others: int = 3) -> list[list]:
    from fogify_net.backends.local import LocalBackend
    from fogify_net.compile.plan import compile_model
    from fogify_net.compile.resources import HostFacts
    from fogify_net.model import ModelBuilder
    from fogify_net.model.schema import BoundTrace, TraceTarget
    from fogify_net.model.traces import parse_trace_spec
    from fogify_net.traces.player import TracePlayer

    m = ModelBuilder()
    m.service("app", image=IMAGE, command=["sleep", "infinity"])
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "50Mbps", "latency": {"delay": "10ms"}, "drop": "0.1%"})
    m.blueprint("a", node="n", service="app", networks=["lan"], replicas=1)
    m.blueprint("b", node="n", service="app", networks=["lan"], replicas=others)
    plan = compile_model(m.build(), HostFacts(cpu_mhz=2000, cpus=os.cpu_count() or 1, memory=2**34))
    emulation = LocalBackend(plan, run_dir="/run/fogify-net-bench")
    emulation.deploy()
    rows = []
    try:
        for prop, low, high in (("bandwidth", "5Mbps", "50Mbps"), ("delay", "5ms", "50ms"), ("loss", "0%", "2%")):
            everyone = others + 1
            for target, what, instances in ((TraceTarget("lan"), f"network of {everyone} ({2 * everyone} links)",
                                             everyone),
                                            (TraceTarget("lan", label="a"), f"one instance of {everyone} (2 links)",
                                             1)):
                spec = parse_trace_spec({"points": [{"time_s": 0, prop: low}, {"time_s": 1, prop: high}],
                                         "mode": "linear", "resolution": "100ms", "name": "bench"}, "b", "b", None)
                player = TracePlayer(emulation)
                player.start(inline=BoundTrace(spec, target))
                time.sleep(steps * 0.1 + 0.05)
                status = player.status()[0]
                player.stop("bench")
                player.close()
                late = status["lateness_ms"]
                partial, full = _apply_cost(emulation, prop, instances)
                rows.append([f"{prop}, linear, 100 ms steps", what, status["steps"], status["skipped"],
                             f"{late['p50']:.1f}", f"{late['p95']:.1f}", f"{late['max']:.1f}",
                             f"{partial:.1f}", f"{full:.1f}"])
    finally:
        emulation.teardown()
    return rows


def _apply_cost(emulation, prop: str, instances: int) -> tuple[float, float]:
    """Median ms of one step's reshape: only the changed links, and everything (the baseline)."""
    from dataclasses import replace

    field = {"bandwidth": "rate", "delay": "delay", "loss": "loss"}[prop]
    values = {"rate": (5_000_000, 10_000_000), "delay": (0.005, 0.01), "loss": (0.5, 1.0)}[field]
    chosen = emulation.plan.instances[:instances]
    costs: dict[bool, list[float]] = {True: [], False: []}
    for i in range(40):  # every reshape changes the value: partial, partial, full, full, ...
        partial = (i // 2) % 2 == 0
        value = values[i % 2]
        for instance in chosen:
            interface = instance.interfaces[0]
            interface.uplink = replace(interface.uplink, **{field: value})
            interface.downlink = replace(interface.downlink, **{field: value})
        began = time.perf_counter()
        emulation.reshape({(i.name, "lan") for i in chosen} if partial else None)
        costs[partial].append((time.perf_counter() - began) * 1000)
    return statistics.median(costs[True]), statistics.median(costs[False])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--instances", type=int, nargs="+", default=[4, 40],
                        help="deployments for the trace steps (instances on the traced network)")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    with machine_lock():
        load = os.getloadavg()[0]
        moves = handover(args.moves) + [floor(args.moves)]
        steps = [row for n in args.instances for row in trace_steps(args.steps, n - 1)]
        load = max(load, os.getloadavg()[0])
    table = markdown_table(["handover", "moves", "reachable p50 ms", "p95 ms", "max ms", "call p50 ms",
                            "silence p50 ms", "silence max ms"], moves)
    emit(f"### Handover: from the move call until the instance answers on the new network\n\n{table}\n"
         "`silence`: the longest time without any answered probe (2 ms apart, to both networks) around a move.\n\n"
         f"{machine_line()}, load average up to {load:.1f}\n", args.markdown)
    table = markdown_table(["trace", "links", "steps", "skipped", "lateness p50 ms", "p95 ms", "max ms",
                            "step reshape ms", "full reshape ms (baseline)"], steps)
    emit(f"### Trace steps: applied minus planned time (userspace shaping)\n\n{table}\n"
         "`step reshape`: one step applied to the traced links only (what the player does); `full reshape`: "
         "the same change applied by comparing every link.\n\n"
         f"{machine_line()}, load average up to {load:.1f}\n", args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
