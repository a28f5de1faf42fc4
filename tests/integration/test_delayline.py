"""The user-space delay line on real links, measured with ping and iperf3.

Two hosts (network namespaces) on one Linux bridge, the layout the emulation
uses in the root namespace:

    uplink of host H   mangle PREROUTING  -m physdev --physdev-in  <H's port>  -j NFQUEUE
    downlink of host H mangle POSTROUTING -m physdev --physdev-out <H's port>  -j NFQUEUE

so a packet A -> B waits A's uplink delay and then B's downlink delay, and
ping's RTT is the sum of all four. Everything is named fgtdl* and removed by
the fixture, even when a test fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fogify_net.host.delayline import DelayLine
from fogify_net.host.delayline.driver import DelayLineError, find_binary


def _binary_missing() -> str | None:
    try:
        find_binary()
    except DelayLineError as exc:
        return str(exc)
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, iptables, NFQUEUE"),
    pytest.mark.skipif(_binary_missing() is not None, reason=f"{_binary_missing()}"),
]

BRIDGE = "fgtdlbr0"
HOSTS = {"A": "10.98.0.1", "B": "10.98.0.2"}
QUEUE_BASE = 32100  # A: 32101 up, 32102 down; B: 32201 up, 32202 down
COMMENT = "fgtdl-test"


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def ns(host: str) -> str:
    return f"fgtdl{host}"


def port(host: str) -> str:
    return f"fgtdl{host}e0"


def up_queue(host: str) -> int:
    return QUEUE_BASE + 100 * (ord(host) - ord("A")) + 1


def down_queue(host: str) -> int:
    return up_queue(host) + 1


def rules() -> list[tuple[str, str, list[str]]]:
    """(table, chain, match+target) of every rule the lab adds; -A adds, -D removes."""
    result = [
        ("filter", "FORWARD", ["-i", "fgt+", "-o", "fgt+", "-j", "ACCEPT"]),
        # Without this, packets of a new flow held together (e.g. pings 10 ms
        # apart behind 50 ms) get one unconfirmed conntrack entry each, and all
        # but the first are dropped as clashes when they leave the queue.
        ("raw", "PREROUTING", ["-i", BRIDGE, "-j", "CT", "--notrack"]),
    ]
    for host in HOSTS:  # --queue-bypass: undelayed rather than dropped while no helper is bound
        result.append(("mangle", "PREROUTING", ["-m", "physdev", "--physdev-in", port(host), "-j", "NFQUEUE",
                                                "--queue-num", str(up_queue(host)), "--queue-bypass"]))
        result.append(("mangle", "POSTROUTING", ["-m", "physdev", "--physdev-out", port(host), "-j", "NFQUEUE",
                                                 "--queue-num", str(down_queue(host)), "--queue-bypass"]))
    return result


def teardown_lab() -> None:
    for table, chain, spec in rules():
        while sh("iptables", "-t", table, "-D", chain, *spec, "-m", "comment", "--comment", COMMENT,
                 check=False).returncode == 0:
            pass
    for host in HOSTS:
        sh("ip", "netns", "del", ns(host), check=False)
        sh("ip", "link", "del", port(host), check=False)
    sh("ip", "link", "del", BRIDGE, check=False)


def setup_lab() -> None:
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "link", "set", BRIDGE, "up")
    for host, address in HOSTS.items():
        sh("ip", "netns", "add", ns(host))
        sh("ip", "link", "add", port(host), "type", "veth", "peer", "name", "eth0", "netns", ns(host))
        sh("ip", "link", "set", port(host), "master", BRIDGE, "up")
        sh("ip", "-n", ns(host), "link", "set", "lo", "up")
        sh("ip", "-n", ns(host), "link", "set", "eth0", "up")
        sh("ip", "-n", ns(host), "addr", "add", f"{address}/24", "dev", "eth0")
    for table, chain, spec in rules():
        position = ["-I", chain, "1"] if chain == "FORWARD" else ["-A", chain]
        sh("iptables", "-t", table, *position, *spec, "-m", "comment", "--comment", COMMENT)


@dataclass
class Reply:
    seq: int
    received: float  # epoch seconds, from ping -D
    rtt_ms: float

    @property
    def sent(self) -> float:
        return self.received - self.rtt_ms / 1000


PING_LINE = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms")


def ping(count: int, interval: float, src: str = "A", dst: str = "B", wait_s: float = 2) -> list[Reply]:
    out = sh("ip", "netns", "exec", ns(src), "ping", "-D", "-n", "-c", str(count), "-i", str(interval),
             "-W", str(math.ceil(wait_s)), HOSTS[dst], check=False, timeout=count * interval + wait_s + 30).stdout
    return [Reply(int(m[2]), float(m[1]), float(m[3])) for m in map(PING_LINE.match, out.splitlines()) if m]


def iperf3_server() -> subprocess.Popen[bytes]:
    """A one-shot iperf3 server in B, returned once it listens."""
    server = subprocess.Popen(["ip", "netns", "exec", ns("B"), "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sh("ip", "netns", "exec", ns("B"), "ss", "-Hltn", "sport = :5201").stdout.strip():
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("iperf3 server did not start")
        time.sleep(0.05)
    return server


def mean_rtt(replies: list[Reply]) -> float:
    return statistics.fmean(r.rtt_ms for r in replies)


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    teardown_lab()  # leftovers of an interrupted run
    try:
        setup_lab()
        yield
    finally:
        teardown_lab()


STATES: list[tuple[str, str]] = []  # what the delay line reported through on_state


@pytest.fixture(scope="module")
def line(lab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DelayLine]:
    delay_line = DelayLine(run_dir=tmp_path_factory.mktemp("run"), on_state=lambda s, d: STATES.append((s, d)))
    delay_line.start()
    try:
        yield delay_line
    finally:
        delay_line.stop()


@pytest.fixture
def links(line: DelayLine) -> Iterator[DelayLine]:
    """Every test starts and ends with all four hops at 0 ms."""

    def reset() -> None:
        for host in HOSTS:
            line.set_queue(up_queue(host), 0)
            line.set_queue(down_queue(host), 0)

    reset()
    yield line
    reset()


def close_to(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= 0.02 * expected + 1.0


def test_one_way_delay_is_sender_uplink_plus_receiver_downlink(links: DelayLine) -> None:
    links.set_queue(up_queue("A"), 10)
    links.set_queue(down_queue("B"), 20)
    request_only = mean_rtt(ping(10, 0.05))
    links.set_queue(up_queue("A"), 0)
    links.set_queue(down_queue("B"), 0)
    links.set_queue(up_queue("B"), 5)
    links.set_queue(down_queue("A"), 15)
    reply_only = mean_rtt(ping(10, 0.05))
    links.set_queue(up_queue("A"), 10)
    links.set_queue(down_queue("B"), 20)
    both = mean_rtt(ping(10, 0.05))

    assert close_to(request_only, 30), request_only  # A->B: 10 + 20, B->A: nothing
    assert close_to(reply_only, 20), reply_only  # B->A: 5 + 15
    assert close_to(both, 50), both
    stats = links.stats()
    assert all(s.dropped == 0 for s in stats.values())
    assert stats[up_queue("A")].pkts >= 20


@pytest.mark.parametrize(
    ("rtt_ms", "count", "interval"),
    [(5, 100, 0.01), (50, 60, 0.01), (150, 40, 0.02), (3000, 10, 0.2)],
)
def test_mean_rtt_matches_the_configured_delay(links: DelayLine, rtt_ms: float, count: int, interval: float) -> None:
    for host in HOSTS:  # a quarter on every hop
        links.set_queue(up_queue(host), rtt_ms / 4)
        links.set_queue(down_queue(host), rtt_ms / 4)
    replies = ping(count, interval, wait_s=2 * rtt_ms / 1000 + 1)

    assert len(replies) == count
    assert close_to(mean_rtt(replies), rtt_ms), (mean_rtt(replies), rtt_ms)


def table_variance(distribution: str) -> float:
    """Variance of t in delay + jitter * t, from the helper's inverse-CDF tables."""
    if distribution == "uniform":
        return 1 / 3  # t uniform in [-1, 1)
    n = 4096
    quantiles = [(i + 0.5) / n for i in range(n)]
    normal = [statistics.NormalDist().inv_cdf(p) for p in quantiles]
    pareto = [min(4 / 3 * ((1 - p) ** (-1 / 3) - 1.5), 4) for p in quantiles]
    table = {
        "normal": [max(-4, min(4, x)) for x in normal],
        "pareto": pareto,
        "paretonormal": [max(-4, min(4, 0.25 * x + 0.75 * y)) for x, y in zip(normal, pareto)],
    }[distribution]
    return statistics.pvariance(table)


@pytest.mark.parametrize(
    ("distribution", "delay_ms", "jitter_ms", "hops"),
    [("uniform", 10, 4, 4), ("normal", 20, 4, 2), ("pareto", 20, 5, 4)],
)
def test_jitter_spread_matches_the_distribution(
    links: DelayLine, distribution: str, delay_ms: float, jitter_ms: float, hops: int
) -> None:
    queues = [up_queue("A"), down_queue("B"), up_queue("B"), down_queue("A")][:hops]
    for queue in queues:
        links.set_queue(queue, delay_ms, jitter_ms, 0, distribution)
    replies = ping(400, 0.005)  # pareto's tail needs the samples: sd's standard error ~6%

    # independent hops: variances add
    expected_sd = math.sqrt(hops * jitter_ms**2 * table_variance(distribution))
    measured_sd = statistics.stdev(r.rtt_ms for r in replies)
    assert len(replies) >= 395
    assert abs(measured_sd - expected_sd) <= 0.25 * expected_sd, (measured_sd, expected_sd)


def test_runtime_change_takes_effect_within_50_ms_and_keeps_tcp_alive(links: DelayLine) -> None:
    links.set_queue(up_queue("A"), 5)
    server = iperf3_server()
    try:
        client = subprocess.Popen(
            ["ip", "netns", "exec", ns("A"), "iperf3", "-c", HOSTS["B"], "-t", "4", "-b", "20M", "-J"],
            stdout=subprocess.PIPE, text=True,
        )
        result: list[list[Reply]] = []
        pinger = threading.Thread(target=lambda: result.append(ping(1000, 0.002)))
        time.sleep(0.5)
        pinger.start()
        time.sleep(1.0)
        changed_at = time.time()
        links.set_queue(up_queue("A"), 150)
        pinger.join()
        report = json.loads(client.communicate(timeout=30)[0])
    finally:
        server.kill()
        server.wait()

    replies = result[0]
    slow = [r for r in replies if r.rtt_ms > 100]
    fast = [r for r in replies if r.rtt_ms < 50]
    assert fast and slow
    first_slow = min(r.sent for r in slow)
    last_fast = max(r.sent for r in fast)
    assert last_fast < first_slow  # a clean switch: no fast packet after the first slow one
    late_ms = 1000 * (last_fast - changed_at)
    assert late_ms <= 50, f"old delay still applied {late_ms:.1f} ms after set"
    # Never early; late only now and then (a 2-core machine busy with iperf3 and 500 pings a second).
    rtts = sorted(r.rtt_ms for r in slow)
    off = [rtt for rtt in rtts if not close_to(rtt, 150)]
    assert rtts[0] >= 149 and close_to(rtts[len(rtts) // 2], 150) and len(off) <= 0.02 * len(rtts), (len(rtts), off)
    assert client.returncode == 0 and "error" not in report
    late = [i["sum"]["bytes"] for i in report["intervals"][2:]]  # after the change at ~1.5 s
    assert all(b > 0 for b in late), late


def test_htb_10mbit_plus_50ms_keeps_tcp_goodput(links: DelayLine) -> None:
    tc = ["ip", "netns", "exec", ns("A"), "tc"]
    sh(*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "5:", "htb", "default", "1")
    sh(*tc, "class", "add", "dev", "eth0", "parent", "5:", "classid", "5:1", "htb", "rate", "10mbit", "burst", "15k")
    # leaf queue ~ 1.5x the bandwidth-delay product (10 Mbit/s * 100 ms RTT = 83 full packets)
    sh(*tc, "qdisc", "add", "dev", "eth0", "parent", "5:1", "handle", "10:", "pfifo", "limit", "128")
    for host in HOSTS:  # 50 ms one way, each way
        links.set_queue(up_queue(host), 25)
        links.set_queue(down_queue(host), 25)
    server = iperf3_server()
    try:
        out = sh("ip", "netns", "exec", ns("A"), "iperf3", "-c", HOSTS["B"], "-t", "8", "-O", "2", "-J",
                 timeout=60).stdout
    finally:
        server.kill()
        server.wait()
        sh(*tc, "qdisc", "del", "dev", "eth0", "root", check=False)

    goodput = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    assert goodput >= 9e6, f"{goodput / 1e6:.2f} Mbit/s"


def test_killed_helper_is_restarted_with_its_configuration(links: DelayLine) -> None:
    links.set_queue(up_queue("A"), 40)
    assert close_to(mean_rtt(ping(5, 0.05)), 40)
    STATES.clear()
    old_pid = links.pid
    assert old_pid is not None and Path(links.pid_file).read_text().strip() == str(old_pid)

    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while [s for s, _ in STATES] != ["degraded", "ok"] and time.monotonic() < deadline:
        time.sleep(0.05)

    assert [s for s, _ in STATES] == ["degraded", "ok"], STATES
    assert links.alive() and links.pid != old_pid
    assert Path(links.pid_file).read_text().strip() == str(links.pid)
    assert close_to(mean_rtt(ping(5, 0.05)), 40)
