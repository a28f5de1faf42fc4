"""Deploy and teardown time of fogify-net against the floor for the same topology, measured in one run.

For each N: N = 6 stands for the taxi example (examples/taxi/docker-compose.yaml
as is; 7 instances: a cloud, 2 edges, 4 cars); any other N is a synthetic fog layout of N idle fogify-net/base
containers (`sleep infinity`): clouds on `wan`, edges on `wan` + `lan`, phones
on `lan` + `iot`, sensors on `iot`, every network with bandwidth, delay and
loss, so the whole shaping path runs.

- fogify-net: `LocalBackend.deploy()` in this process until it returns
  (containers, shells, links, shaping, hosts files), then `LocalBackend.teardown()`.
- floor: the same containers (same image and command, `network_mode=none`)
  started with the docker SDK with fogify-net's parallelism (PARALLEL_STARTS),
  the same bridges and veth pairs made by ONE root-namespace `ip -batch`
  (container ends created directly in each container's netns), one
  `ip -batch` per container for addresses; then parallel `remove(force=True)`
  and one batch of bridge deletes. No shells, shaping or names: what any
  emulator of this topology has to pay.

Prints a Markdown table (with --phases also where fogify-net's deploy time goes)
and the machine's facts.

    sudo /opt/fogify-net/venv/bin/python bench/deploy.py [--n 6 50 200] [--repeat 1] [--markdown FILE]

It holds the machine lock (/run/fogify-net-machine.lock) while it runs. The
floor's resources are named fgtb-* (bridges fgtb-<k>, ports fgtbh<i>e<k>,
containers fgtb-floor-<i> with label fgt=1) and removed at the end, also on
errors; fogify-net's own teardown removes what the emulation made.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402

from fogify_net.backends.local import LocalBackend  # noqa: E402
from fogify_net.compile.plan import Plan, compile_model  # noqa: E402
from fogify_net.emulation import network as network_module  # noqa: E402
from fogify_net.host.capabilities import probe  # noqa: E402
from fogify_net.host.facts import read_host_facts  # noqa: E402
from fogify_net.model import ModelBuilder  # noqa: E402
from fogify_net.model.parse import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TAXI = ROOT / "examples" / "taxi" / "docker-compose.yaml"
IMAGE = "fogify-net/base:latest"
RUN_DIR = "/run/fogify-net-bench"
FLOOR_PREFIX = "fgtb-floor-"
FLOOR_LABEL = {"fgt": "1"}
QUIET_TIMEOUT = 60.0
SETTLED_CPUS = 0.3  # busy CPUs (of all) under which the machine counts as calm before a run


# --- the models -------------------------------------------------------------------------------


def synthetic_model(n: int):
    """N idle instances in a cloud / edge / device layout over three shaped networks."""
    clouds = max(1, n // 20)
    edges = max(1, n // 5)
    devices = max(2, n - clouds - edges)
    phones = devices // 2
    sensors = devices - phones
    m = ModelBuilder()
    for service in ("cloud", "edge", "device"):
        m.service(service, image=IMAGE, command=["sleep", "infinity"])
    m.node("cloud-node", cores=2, clock_speed=1400, memory="512M")
    m.node("edge-node", cores=1, clock_speed=1000, memory="256M")
    m.node("device-node", cores=1, clock_speed=500, memory="64M")
    m.network("wan", uplink={"bandwidth": "100Mbps", "latency": {"delay": "30ms"}, "drop": "0.1%"},
              downlink={"bandwidth": "200Mbps", "latency": {"delay": "30ms"}, "drop": "0.1%"})
    m.network("lan", bidirectional={"bandwidth": "50Mbps", "latency": {"delay": "5ms"}, "drop": "0.5%"})
    m.network("iot", bidirectional={"bandwidth": "5Mbps", "latency": {"delay": "15ms", "deviation": "2ms"},
                                    "drop": "1%"})
    m.blueprint("cloud", node="cloud-node", service="cloud", networks=["wan"], replicas=clouds)
    m.blueprint("edge", node="edge-node", service="edge", networks=["wan", "lan"], replicas=edges)
    m.blueprint("phone", node="device-node", service="device", networks=["lan", "iot"], replicas=phones)
    m.blueprint("sensor", node="device-node", service="device", networks=["iot"], replicas=sensors)
    return m.build()


def make_plan(n: int) -> Plan:
    model = load_model(TAXI) if n == 6 else synthetic_model(n)
    return compile_model(model, read_host_facts())


def describe(plan: Plan) -> str:
    ports = sum(len(i.interfaces) for i in plan.instances)
    kind = "taxi example" if "cloud-server" in plan.model.services else "synthetic"
    return f"{len(plan.instances)} instances ({kind}), {len(plan.networks)} networks, {ports} veth pairs"


# --- fogify-net -------------------------------------------------------------------------------


@dataclass
class Times:
    deploy: float = 0.0
    teardown: float = 0.0
    tail: float = 0.0  # from the last container's start to the end of the deploy: the work Docker does not hide
    phases: dict[str, float] = field(default_factory=dict)


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (Docker's work included, and anyone else's)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Own and machine CPU seconds spent inside a `with` block, added to `phases`."""

    def __init__(self, phases: dict[str, float], name: str):
        self.phases, self.name = phases, name

    def __enter__(self):
        self.own, self.machine = own_cpu(), machine_cpu()
        return self

    def __exit__(self, *exc):
        self.phases[f"{self.name} CPU own"] = own_cpu() - self.own
        self.phases[f"{self.name} CPU machine"] = machine_cpu() - self.machine


def _timed(phases: dict[str, float], name: str, fn):
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
    return wrapper


def run_fogify(plan: Plan, capabilities, phases: bool) -> Times:
    times = Times()
    emulation = LocalBackend(plan, capabilities=capabilities, run_dir=RUN_DIR)
    if phases:
        for name in ("_preflight", "_ensure_forwarding", "_create_bridges", "_start_container", "_start_shell",
                     "write_hosts", "_remove_instances"):
            setattr(emulation, name, _timed(times.phases, name, getattr(emulation, name)))
        for name in ("start", "apply", "stop"):
            setattr(emulation.shaper, name, _timed(times.phases, f"shaper.{name}", getattr(emulation.shaper, name)))
    last = [0.0]
    start_container = emulation._start_container

    def timed_start(instance) -> None:
        start_container(instance)
        last[0] = max(last[0], time.perf_counter())

    emulation._start_container = timed_start
    torn_down = False
    try:
        began = time.perf_counter()
        with CpuMeter(times.phases, "deploy"):
            emulation.deploy(progress=_progress("fogify-net"))
        times.deploy = time.perf_counter() - began
        times.tail = began + times.deploy - last[0]
        began = time.perf_counter()
        with CpuMeter(times.phases, "teardown"):
            emulation.teardown()
        times.teardown = time.perf_counter() - began
        torn_down = True
    finally:
        if not torn_down:
            emulation.teardown()
    return times


def _progress(who: str):
    def report(done: int, total: int, what: str) -> None:
        if done == total or done % 50 == 0:
            print(f"  {who}: {done}/{total} {what}", file=sys.stderr)
    return report


# --- the floor --------------------------------------------------------------------------------


def floor_names(plan: Plan) -> tuple[dict[str, str], dict[str, str]]:
    """Bridge per network and container per instance, with the floor's own prefix."""
    bridges = {name: f"fgtb-{k}" for k, name in enumerate(plan.networks)}
    containers = {i.name: f"{FLOOR_PREFIX}{i.index}" for i in plan.instances}
    return bridges, containers


def _port(instance, k: int) -> str:
    return f"fgtbh{instance.index}e{k}"


def ip_batch(lines: list[str], pid: int | None = None, force: bool = False) -> None:
    argv = ["ip", *(["-force"] if force else []), "-batch", "-"]
    if pid is not None:
        argv = ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]
    result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    if result.returncode and not force:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _command(value):
    return list(value) if isinstance(value, tuple) else value


def run_floor(plan: Plan, client: docker.DockerClient) -> Times:
    times = Times()
    bridges, names = floor_names(plan)
    workers = network_module.PARALLEL_STARTS
    started: dict[str, object] = {}
    try:
        began = time.perf_counter()
        meter = CpuMeter(times.phases, "deploy").__enter__()
        last = [0.0]

        def start(instance) -> None:
            container = client.containers.run(
                instance.service.image, _command(instance.service.command),
                entrypoint=_command(instance.service.entrypoint), environment=instance.environment(),
                name=names[instance.name], labels=FLOOR_LABEL, network_mode="none", detach=True)
            container.reload()  # `run` answers with what `create` said: no pid yet
            started[instance.name] = container
            last[0] = max(last[0], time.perf_counter())

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(start, i) for i in plan.instances]:
                future.result()
        pids = {name: int(c.attrs["State"]["Pid"]) for name, c in started.items()}
        root = []
        for bridge in bridges.values():
            root += [f"link add name {bridge} type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
                     f"link set {bridge} up"]
        for instance in plan.instances:
            for k, interface in enumerate(instance.interfaces):
                port = _port(instance, k)
                root += [f"link add name {port} type veth peer name {interface.name} netns {pids[instance.name]}",
                         f"link set {port} master {bridges[interface.network]} up"]
        ip_batch(root)

        def address(instance) -> None:
            lines = ["link set lo up"]
            for interface in instance.interfaces:
                lines += [f"addr add {interface.cidr} dev {interface.name}", f"link set {interface.name} up"]
            ip_batch(lines, pids[instance.name])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(address, i) for i in plan.instances]:
                future.result()
        times.deploy = time.perf_counter() - began
        times.tail = began + times.deploy - last[0]
        meter.__exit__()

        began = time.perf_counter()
        with CpuMeter(times.phases, "teardown"):
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(c.remove, force=True) for c in started.values()]:
                    future.result()
            started.clear()
            ip_batch([f"link del {bridge}" for bridge in bridges.values()], force=True)
        times.teardown = time.perf_counter() - began
    finally:
        remove_floor(client, plan)
    return times


def remove_floor(client: docker.DockerClient, plan: Plan | None = None) -> None:
    """Everything of the floor's, whether or not the run got far: containers by name and label, links by name."""
    for container in client.containers.list(all=True, filters={"label": "fgt=1"}):
        if container.name.startswith(FLOOR_PREFIX):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
    floor_links = [name for name in links() if name.startswith(("fgtb-", "fgtbh"))]
    if floor_links:
        ip_batch([f"link del {name}" for name in floor_links], force=True)


# --- leftovers --------------------------------------------------------------------------------


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}


def containers() -> set[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    return set(out.split())


def ours(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith(("fgtb", "fgn", "fogify_", "mn."))}


def wait_quiet(timeout: float = QUIET_TIMEOUT) -> set[str]:
    """Wait (untimed) until the last run's links are gone and the CPUs calm down; returns what is left.

    The kernel destroys namespaces in the background well after their links
    vanish (about 28 ms of CPU each, peers.md §5.2): a run that starts meanwhile
    would pay for the previous one. Other users' load can keep the machine busy,
    so the calm-down wait gives up after `timeout` too.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = ours(links()) | ours(containers())
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    while time.monotonic() < deadline:
        busy = machine_cpu()
        time.sleep(1.0)
        if machine_cpu() - busy < SETTLED_CPUS:
            break
    return left


# --- main -------------------------------------------------------------------------------------


def warm_up(client: docker.DockerClient, images: set[str]) -> None:
    """One container per image started and removed, so the first measured run pays no cold cache."""
    for k, image in enumerate(sorted(images)):
        container = client.containers.run(image, ["true"], entrypoint=[], name=f"{FLOOR_PREFIX}warm{k}",
                                          labels=FLOOR_LABEL, network_mode="none", detach=True)
        container.remove(force=True)


def median(runs: list[Times], key: str) -> float:
    return statistics.median(getattr(t, key) for t in runs)


def median_phase(runs: list[Times], key: str) -> float:
    return statistics.median(t.phases.get(key, 0.0) for t in runs)


def fmt(seconds: float) -> str:
    return f"{seconds:.2f}"


def measure(n: int, repeat: int, capabilities, client, phases: bool, only: str | None = None
            ) -> tuple[list[Times], list[Times], str]:
    fogify_runs, floor_runs = [], []
    what = ""
    for r in range(repeat):
        order = ("floor", "fogify-net") if r % 2 == 0 else ("fogify-net", "floor")
        for who in [w for w in order if only in (None, w)]:
            plan = make_plan(n)
            what = describe(plan)
            print(f"N={n} run {r + 1}/{repeat}: {who}, {what}", file=sys.stderr)
            left = wait_quiet()
            if left:
                raise RuntimeError(f"still there from an earlier run: {sorted(left)[:10]}")
            if who == "floor":
                floor_runs.append(run_floor(plan, client))
                t = floor_runs[-1]
            else:
                fogify_runs.append(run_fogify(plan, capabilities, phases))
                t = fogify_runs[-1]
            print(f"  {who}: deploy {t.deploy:.2f} s, teardown {t.teardown:.2f} s", file=sys.stderr)
    return fogify_runs, floor_runs, what


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[6, 50, 200],
                        help="instance counts (6: the taxi example; others: synthetic); default 6 50 200")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N and side; the table shows medians")
    parser.add_argument("--markdown", metavar="FILE", help="also append the tables to FILE")
    parser.add_argument("--phases", action="store_true", help="also show where fogify-net's deploy time goes")
    parser.add_argument("--only", choices=("fogify-net", "floor"), help="run one side only (for profiling)")
    parser.add_argument("--verbose", action="store_true", help="fogify-net's log on stderr")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (containers, namespaces, links)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)

    client = docker.from_env(timeout=300, max_pool_size=32)
    rows, phase_rows, cpu_rows = [], [], []
    with machine_lock():
        before_links, before_containers = links(), containers()
        capabilities = probe()
        try:
            warm_up(client, {i.service.image for n in args.n for i in make_plan(n).instances})
            for n in args.n:
                fogify_runs, floor_runs, what = measure(n, args.repeat, capabilities, client, args.phases, args.only)
                label = f"taxi ({len(make_plan(n).instances)})" if n == 6 else str(n)
                if fogify_runs and floor_runs:
                    deploy, floor_deploy = median(fogify_runs, "deploy"), median(floor_runs, "deploy")
                    down, floor_down = median(fogify_runs, "teardown"), median(floor_runs, "teardown")
                    rows.append([label, fmt(deploy), fmt(floor_deploy), f"{deploy / floor_deploy:.2f}",
                                 fmt(down), fmt(floor_down), f"{down / floor_down:.2f}"])
                for side, runs in (("fogify-net", fogify_runs), ("floor", floor_runs)):
                    if runs:
                        cpu_rows.append([label, side, fmt(median(runs, "deploy")), fmt(median(runs, "tail")),
                                         *(fmt(median_phase(runs, f"{step} CPU {who}"))
                                           for step in ("deploy", "teardown") for who in ("own", "machine"))])
                if args.phases and fogify_runs:
                    keys = sorted({k for t in fogify_runs for k in t.phases if "CPU" not in k})
                    phase_rows.append((label, {k: median_phase(fogify_runs, k) for k in keys}))
                print(f"N={n}: {what}", file=sys.stderr)
        finally:
            remove_floor(client)
            wait_quiet()
            left = (links() - before_links) | (containers() - before_containers)
        mechanism = capabilities.mechanism("auto")

    text = (f"\n### Deploy and teardown: fogify-net against the floor ({args.repeat} run(s) each, median; "
            f"shaping {mechanism}, {network_module.PARALLEL_STARTS} parallel starts)\n\n")
    if rows:
        text += markdown_table(["N", "deploy s", "floor deploy s", "ratio", "undeploy s", "floor undeploy s", "ratio"],
                               rows)
    if phase_rows:
        keys = sorted({k for _, p in phase_rows for k in p})
        text += ("\nWhere fogify-net's time goes, s (container and shell starts are summed over threads, "
                 "which overlap):\n\n")
        text += markdown_table(["N", *keys], [[n, *(fmt(p.get(k, 0.0)) for k in keys)] for n, p in phase_rows])
    if args.phases:
        text += ("\nAfter last container: from the last container's start to the end of the deploy. "
                 "CPU seconds: own = this process and its children (ip, tc, nsenter, shells once reaped); "
                 "machine = every CPU's busy time, Docker's included (and anyone else's):\n\n")
        text += markdown_table(["N", "side", "deploy s", "after last container s", "deploy CPU own",
                                "deploy CPU machine", "teardown CPU own",
                                "teardown CPU machine"], cpu_rows, "llrrrrrr")
    text += f"\n{machine_line()}\n"
    emit(text, args.markdown)
    if left:
        print(f"LEFT BEHIND: {sorted(left)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
