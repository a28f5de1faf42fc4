"""The fidelity monitor under real load: an overload is reported with the right reason within 3 s,
and an idle or moderate deployment stays faithful for 60 s.

Through a real Controller (sampling every second, as `fogify-net api` does), its API routes and its
store. The no-false-alarm test needs a quiet machine: it holds the machine lock (the `machine`
fixture) and first waits for the other processes' CPU use to settle (the VM lane and other runs
use this machine too); if they do not settle, or if they load the machine while it runs, it skips
with the figures rather than blame the monitor for them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from fogify_net.host.fidelity import parse_proc_stat
from fogify_net.monitoring.fidelity import DELAY_DROPS, DELAY_LATE, HOST_CPU, INSTANCE_CPU

from .conftest import BASE_IMAGE, assert_clean, snapshot, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

HOST_MHZ = 2000.0  # the controller's CPU formula: a node of 1 core at 2000 MHz is one CPU
DETECT_S = 3.0
QUIET_CORES = 0.35  # CPUs other processes may use while the no-false-alarm test runs


def compose(replicas: int, network: dict, cpus: float = 1) -> str:
    """`replicas` instances of `cpus` CPUs each on the network `lan`."""
    cores = max(1, math.ceil(cpus))
    return yaml.safe_dump({
        "version": "3.7",
        "services": {"app": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
        "x-fogify": {
            "nodes": [{"name": "node", "capabilities": {
                "processor": {"cores": cores, "clock_speed": HOST_MHZ * cpus / cores}, "memory": "256M"}}],
            "networks": [{"name": "lan", **network}],
            "topology": [{"node": "node", "service": "app", "label": "n", "replicas": replicas, "networks": ["lan"]}],
        },
    })


@pytest.fixture
def controller(tmp_path):
    from fogify_net.controller import Controller

    before = snapshot()
    c = Controller(data_dir=tmp_path / "data", run_dir="/run/fogify-net-test", host_mhz=HOST_MHZ)
    yield c
    c.close()
    assert_clean(before)


def quiet_machine(timeout: float = 120.0) -> None:
    """Wait until other processes leave the CPUs to this test (else skip, with the figures): a machine
    that is saturated already cannot show what the test's own load does."""
    deadline = time.monotonic() + timeout
    while True:
        with CpuWatch(lambda: process_cpu_ns(os.getpid())) as watch:
            time.sleep(3.2)
        others = max(o for _, o in watch.samples)
        if others <= QUIET_CORES:
            return
        if time.monotonic() > deadline:
            with open("/proc/loadavg") as f:
                pytest.skip(f"other processes keep {others:.2f} CPUs busy (load average {f.read().strip()})")


def deploy(controller, text: str) -> None:
    quiet_machine()
    controller.deploy(text)
    assert wait_until(lambda: controller.status in ("running", "degraded", "error"), timeout=120)
    assert controller.status == "running", controller.message
    assert wait_until(lambda: controller.report()["fidelity"] == "ok", timeout=10), controller.report()


def time_to_degraded(controller, began: float, timeout: float = 10.0) -> float:
    """Seconds from `began` (monotonic) until the controller reports degraded."""
    assert wait_until(lambda: controller.report()["fidelity"] == "degraded", timeout=timeout, interval=0.05), (
        f"not degraded within {timeout} s: {controller.report()['fidelity']}")
    return time.monotonic() - began


def checks_open(controller) -> set[str]:
    return {check for check, _ in controller.fidelity.open}


def ip(controller, name: str) -> str:
    return str(controller.emulation.plan.instance(name).interface("lan").ip)


class CpuWatch:
    """Each second: the machine's busy CPUs, and those of processes outside `ours` (cgroup usage files)."""

    def __init__(self, ours):
        self.ours = ours  # () -> cumulative CPU ns of what the test runs (containers, helpers)
        self.samples: list[tuple[float, float]] = []  # (busy CPUs, others' CPUs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def busy_ticks() -> int:
        with open("/proc/stat", "rb") as f:
            cores, _ = parse_proc_stat(f.read())
        return sum(busy for busy, _ in cores)

    def _loop(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        busy, ours, at = self.busy_ticks(), self.ours(), time.monotonic()
        while not self._stop.wait(1.0):
            busy2, ours2, at2 = self.busy_ticks(), self.ours(), time.monotonic()
            cpus = (busy2 - busy) / tick / (at2 - at)
            self.samples.append((cpus, cpus - (ours2 - ours) / 1e9 / (at2 - at)))
            busy, ours, at = busy2, ours2, at2

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def process_cpu_ns(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def deployment_cpu_ns(controller) -> int:
    """CPU the deployment and the test's own process used so far: containers, the delay helper, us."""
    total = process_cpu_ns(os.getpid())
    emulation = controller.emulation
    if emulation is not None:
        for host in list(emulation.hosts.values()):
            try:
                with open(f"/sys/fs/cgroup/cpuacct/docker/{host.container.id}/cpuacct.usage") as f:
                    total += int(f.read())
            except OSError:
                pass
        line = getattr(getattr(emulation, "shaper", None), "delayline", None)
        if line is not None and line.pid:
            total += process_cpu_ns(line.pid)
    return total


def test_more_busy_instances_than_cores_is_reported_within_3_s(controller):
    """Four instances of one CPU each, all busy, on this machine's cores (two in CI): each gets about half
    of its CPU and the machine saturates. Reported within 3 s, with the instances' and the host's reasons."""
    cores = os.cpu_count() or 2
    deploy(controller, compose(2 * cores, {"bidirectional": {"bandwidth": "100Mbps"}}))
    time.sleep(2.5)  # two faithful rounds first

    began = time.monotonic()
    controller.act("stress", {"instance_type": "n", "cpu": 100, "duration": 12})
    detected = time_to_degraded(controller, began)
    print(f"\ndegraded {detected:.2f} s after {2 * cores} one-CPU instances went busy on {cores} cores: "
          f"{controller.report()['fidelity_reasons']}")
    assert detected <= DETECT_S
    assert checks_open(controller) & {INSTANCE_CPU, HOST_CPU}
    assert wait_until(lambda: HOST_CPU in checks_open(controller), timeout=3)
    status = controller.report()
    assert any(reason.startswith("host CPU saturated") for reason in status["fidelity_reasons"])
    starved = [i for i in status["instances"] if i["fidelity"] == "degraded"]
    assert len(starved) == 2 * cores and all(i["fidelity_reasons"] for i in starved)

    # The stress ends: five clean rounds later the episodes end, and the record shows where they were.
    assert wait_until(lambda: controller.report()["fidelity"] == "ok", timeout=25)
    annotations = [a["annotation"] for a in controller.store.annotations()]
    assert "FIDELITY_START" in annotations and "FIDELITY_END" in annotations
    episodes = controller.store.episodes()
    assert {e["check"] for e in episodes} >= {HOST_CPU, INSTANCE_CPU} and all(e["end"] for e in episodes)
    marks = [r["fidelity"] for r in controller.store.records(instance="n.1")["n.1"] if "fidelity" in r]
    assert 0.0 in marks and marks[-1] == 1.0

    from fogify_net_api import create_app

    client = create_app(controller).test_client()
    answer = client.get("/fidelity/?instance=n.1").get_json()
    assert answer["fidelity"] == "ok" and answer["thresholds"]["host_busy_pct"] == 90.0
    assert answer["episodes"] and all("n.1" in e["instances"] for e in answer["episodes"])
    assert client.get("/status/").get_json()["fidelity"] == "ok"


def test_a_flood_through_the_delay_line_is_reported_within_3_s(controller):
    """UDP as fast as iperf3 sends small datagrams, through a 10 ms delay and no rate limit: the delay
    line falls behind (late or dropping) and says so on that link within 3 s."""
    deploy(controller, compose(2, {"bidirectional": {"latency": {"delay": "20ms"}}}, cpus=2))
    emulation = controller.emulation
    if emulation.mechanism != "userspace":
        pytest.skip(f"the delay line is not in use here ({emulation.mechanism})")
    time.sleep(2.5)
    a, b = emulation.hosts["n.1"], emulation.hosts["n.2"]
    server = b.popen(["iperf3", "-s", "-1"])
    try:
        wait_until(lambda: ":5201" in b.cmd("ss -ltn"), timeout=5)
        began = time.monotonic()
        client = a.popen(["iperf3", "-c", ip(controller, "n.2"), "-u", "-b", "0", "-l", "64", "-P", "4", "-t", "8"])
        try:
            detected = time_to_degraded(controller, began)
            wait_until(lambda: checks_open(controller) & {DELAY_LATE, DELAY_DROPS}, timeout=1)
            reasons = controller.report()["fidelity_reasons"]
            print(f"\ndegraded {detected:.2f} s after a UDP flood started through a 10 ms delay line: {reasons}")
        finally:
            client.wait(30)
    finally:
        server.kill()
        server.wait()
    assert detected <= DETECT_S
    assert checks_open(controller) & {DELAY_LATE, DELAY_DROPS}, reasons
    status = controller.report()
    flooded = status["instances"][0]["networks"]["lan"]
    assert flooded["fidelity"] == "degraded", status["instances"]
    assert any(r.startswith("delay line") and "on lan (n.1 uplink)" in r for r in status["fidelity_reasons"])


def test_an_idle_then_moderate_deployment_stays_faithful_for_60_s(controller):
    """Three instances: 30 s idle, then 30 s of a 10 Mbit/s TCP flow through a 20 ms delay line and 30%
    CPU stress on one instance. No check may fail."""
    network = {"bidirectional": {"bandwidth": "20Mbps", "latency": {"delay": "20ms"}}}
    deploy(controller, compose(3, network, cpus=0.5))
    emulation = controller.emulation
    states: list[str] = []
    with CpuWatch(lambda: deployment_cpu_ns(controller)) as watch:
        for _ in range(30):
            time.sleep(1.0)
            states.append(controller.report()["fidelity"])
        server = emulation.hosts["n.2"].popen(["iperf3", "-s", "-1"])
        try:
            wait_until(lambda: ":5201" in emulation.hosts["n.2"].cmd("ss -ltn"), timeout=5)
            client = emulation.hosts["n.1"].popen(["iperf3", "-c", ip(controller, "n.2"), "-b", "10M", "-t", "29"])
            controller.act("stress", {"instance_type": "n.3", "cpu": 30, "duration": 29})
            for _ in range(30):
                time.sleep(1.0)
                states.append(controller.report()["fidelity"])
            client.wait(30)
        finally:
            server.kill()
            server.wait()
    busiest = max(watch.samples)
    print(f"\n60 s: fidelity {sorted(set(states))}; machine busy {min(b for b, _ in watch.samples):.2f}-"
          f"{busiest[0]:.2f} CPUs, others up to {max(o for _, o in watch.samples):.2f}; "
          f"episodes {controller.store.episodes()}")
    if "degraded" in states and max(o for _, o in watch.samples) > QUIET_CORES:
        pytest.skip(f"inconclusive: other processes used up to {max(o for _, o in watch.samples):.2f} CPUs meanwhile "
                    f"({controller.store.episodes()})")
    assert states == ["ok"] * 60, controller.store.episodes()
    assert controller.store.episodes() == []


def test_the_delay_helper_runs_real_time_as_nobody_with_net_admin_alone(tmp_path):
    """The driver (root) makes the helper real-time from outside; the helper drops to nobody with
    CAP_NET_ADMIN alone and no_new_privs, and keeps the policy (no CAP_SYS_NICE kept for it)."""
    from fogify_net.host.delayline import DelayLine

    line = DelayLine(run_dir=tmp_path, name="fgt-delayd-rt")
    line.start()
    try:
        pid = line.pid
        proc = Path(f"/proc/{pid}/status")
        assert wait_until(lambda: "Uid:\t65534" in proc.read_text(), timeout=5)
        status = dict(row.split(":\t", 1) for row in proc.read_text().splitlines() if ":\t" in row)
        assert status["Uid"].split() == ["65534"] * 4 and status["Gid"].split() == ["65534"] * 4
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 1 << 12  # CAP_NET_ADMIN
        assert status["NoNewPrivs"].strip() == "1"
        assert os.sched_getscheduler(pid) == os.SCHED_FIFO
        assert os.sched_getparam(pid).sched_priority == line.realtime
        assert os.getpriority(os.PRIO_PROCESS, pid) == line.nice
    finally:
        line.stop()
