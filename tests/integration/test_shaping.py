"""Delay, jitter and loss, measured with real traffic, with each mechanism the machine has.

The user-space mechanism (HTB + nftables + fogify-delayd) runs here; the netem
one runs where the kernel has sch_netem (scripts/vm.sh test runs these tests
on Debian's stock kernel) and is skipped with the reason elsewhere. The bounds
are the acceptance bounds of issue 3.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import statistics
import subprocess
import time

import pytest

from fogify_net.host.capabilities import NETEM, USERSPACE, probe
from fogify_net.model import ModelBuilder
from fogify_net.model.schema import QoSPatch

from .conftest import BASE_IMAGE, emulation, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

# In the stock-kernel VM without KVM (scripts/vm.sh sets FOGIFY_NET_EMULATED_CPU=1) QEMU emulates
# the CPU. Measured there: an unshaped ping takes 0.5-1 ms, and each netem timer fires 0.3-0.8 ms
# late, so a ping that crosses four shaping points comes back up to ~4 ms late (never early), and
# the emulator's stalls on a busy host add replies tens of ms late, which widen a spread. A tc
# change takes ~1 s there (each fork of tc and nsenter is emulated). These allowances apply there only.
EMULATED = os.environ.get("FOGIFY_NET_EMULATED_CPU") == "1"
LATE_MS = 5.0 if EMULATED else 0.0  # how late a round trip may come back
SPREAD_SLACK = 0.5 if EMULATED else 0.0  # how much wider than declared a spread may be, as a fraction
CHANGE_S = 3.0 if EMULATED else 0.050  # how long a runtime change may take


@pytest.fixture(params=[USERSPACE, NETEM])
def mechanism(request, machine):
    caps = probe()
    try:
        caps.mechanism(request.param)
    except ValueError as why:
        pytest.skip(str(why))
    return request.param


def pair(network: dict, replicas: int = 2) -> ModelBuilder:
    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=2000, memory="256M")
    m.network("net", **network)
    m.blueprint("n", node="box", service="app", networks=["net"], replicas=replicas)
    return m


def rtts(host, address, count: int, interval: float) -> tuple[list[float], int]:
    """RTTs (ms) of the replies and the number of requests sent."""
    out = host.cmd(f"ping -n -c {count} -i {interval} -W 8 {address}")
    values = [float(v) for v in re.findall(r"time=([\d.]+) ms", out)]
    return values, count


@pytest.mark.parametrize("delay_ms, count, interval",
                         [(5, 200, 0.02), (50, 100, 0.05), (150, 60, 0.1), (3000, 10, 0.2)])
def test_mean_rtt_of_a_bidirectional_delay(mechanism, delay_ms, count, interval):
    model = pair({"bidirectional": {"latency": {"delay": f"{delay_ms}ms"}}}).build()
    with emulation(model, shaping=mechanism) as emu:
        a = emu.hosts["n.1"]
        values, _ = rtts(a, emu.plan.instance("n.2").interface("net").ip, count, interval)
        assert len(values) >= count - 1
        expected = 2 * delay_ms  # the declared delay is one-way; a ping crosses it twice
        mean = statistics.fmean(values)
        tolerance = 0.02 * expected + 1
        assert -tolerance <= mean - expected <= tolerance + LATE_MS, f"mean RTT {mean:.2f} ms, expected {expected} ms"


def test_jitter_spreads_the_rtt_as_declared(mechanism):
    model = pair({"bidirectional": {"latency": {"delay": "50ms", "deviation": "10ms"}}}).build()
    with emulation(model, shaping=mechanism) as emu:
        values, _ = rtts(emu.hosts["n.1"], emu.plan.instance("n.2").interface("net").ip, 400, 0.02)
        # bidirectional splits the jitter variance over the two directions of a path; a ping
        # crosses four shaping points (each host's uplink and downlink, both ways), each uniform
        # in [d - j, d + j] with j = 10 ms / sqrt(2), so variance 4 * j^2 / 3
        per_point = 10 / math.sqrt(2)
        expected = math.sqrt(4 * per_point**2 / 3)
        measured = statistics.stdev(values)
        assert -0.25 * expected <= measured - expected <= (0.25 + SPREAD_SLACK) * expected, \
            f"RTT std {measured:.2f} ms, expected {expected:.2f}"
        assert -3 <= statistics.fmean(values) - 100 <= 3 + LATE_MS


@pytest.mark.parametrize("side", ["sender's uplink", "receiver's downlink"])
@pytest.mark.parametrize("percent", [1, 10])
def test_loss_over_2000_packets_is_within_four_sigma(mechanism, percent, side):
    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=2000, memory="256M")
    m.network("net", bidirectional={"bandwidth": "100Mbps"})
    lossy = {"name": "net", "uplink": {"bandwidth": "100Mbps"}, "downlink": {"bandwidth": "100Mbps"}}
    lossy["uplink" if side == "sender's uplink" else "downlink"]["drop"] = f"{percent}%"
    sender_net, receiver_net = (lossy, "net") if side == "sender's uplink" else ("net", lossy)
    m.blueprint("sender", node="box", service="app", networks=[sender_net])
    m.blueprint("receiver", node="box", service="app", networks=[receiver_net])
    with emulation(m.build(), shaping=mechanism) as emu:
        sender, address = emu.hosts["sender.1"], emu.plan.instance("receiver.1").interface("net").ip
        # both neighbour caches filled first: a lost ARP request would stall the probes behind it
        # for a second (hundreds of them at this rate), which is not the loss under test
        sender.cmd(f"ping -n -c 5 -i 0.2 -W 2 {address}")
        n = 2000
        values, sent = rtts(sender, address, n, 0.002)
        lost = (sent - len(values)) / sent
        p = percent / 100
        sigma = math.sqrt(p * (1 - p) / n)
        # four sigma, not three: three (0.27 % per variant by chance) failed a CI run with
        # 37 lost of 2000 at 1 %; with the variants of every run it would fail about one in fifty
        assert abs(lost - p) <= 4 * sigma, f"lost {lost:.4f}, declared {p} (4 sigma = {4 * sigma:.4f})"


RECEIVER = """
import socket, sys, time
count = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
s.settimeout(3)
print("ready", flush=True)
for _ in range(count):
    try:
        data, _ = s.recvfrom(64)
    except socket.timeout:
        break
    print(f"{(time.time() - float(data)) * 1000:.3f}", flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    s.sendto(repr(time.time()).encode(), (sys.argv[1], 9999))
    time.sleep(0.02)
"""


def one_way_ms(sender, receiver, address, count: int = 50) -> list[float]:
    """One-way delays (ms) of UDP datagrams stamped with the send time: both ends read the same clock."""
    listener = receiver.popen(["python3", "-c", RECEIVER, str(count)], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        sender.popen(["python3", "-c", SENDER, str(address), str(count)]).wait(timeout=60)
        out, _ = listener.communicate(timeout=30)
    finally:
        listener.kill()
    return [float(v) for v in out.split()]


def test_one_way_delay_is_the_senders_uplink_plus_the_receivers_downlink(mechanism):
    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=2000, memory="256M")
    m.network("net", uplink={"latency": {"delay": "10ms"}}, downlink={"latency": {"delay": "20ms"}})
    slow_sender = {"name": "net", "uplink": {"latency": {"delay": "40ms"}}, "downlink": {"latency": {"delay": "20ms"}}}
    m.blueprint("a", node="box", service="app", networks=[slow_sender])
    m.blueprint("b", node="box", service="app", networks=["net"])
    with emulation(m.build(), shaping=mechanism) as emu:
        a, b = emu.hosts["a.1"], emu.hosts["b.1"]
        ip = {n: emu.plan.instance(f"{n}.1").interface("net").ip for n in "ab"}
        a_to_b = statistics.median(one_way_ms(a, b, ip["b"]))  # a's uplink 40 + b's downlink 20
        b_to_a = statistics.median(one_way_ms(b, a, ip["a"]))  # b's uplink 10 + a's downlink 20
        # the stamps are taken by Python at both ends: on an emulated CPU that adds a ping's lateness
        assert -1 <= a_to_b - 60 <= 1 + LATE_MS, f"a -> b took {a_to_b:.2f} ms, expected 60"
        assert -1 <= b_to_a - 30 <= 1 + LATE_MS, f"b -> a took {b_to_a:.2f} ms, expected 30"
        # what the two ends add cancels out in the difference: the directions are not swapped
        assert abs(a_to_b - b_to_a - 30) <= 2 + LATE_MS / 2, f"a -> b {a_to_b:.2f} ms, b -> a {b_to_a:.2f} ms"


def test_a_links_rule_delays_its_pair_only(mechanism):
    m = pair({"bidirectional": {"latency": {"delay": "5ms"}}})
    m.blueprint("c", node="box", service="app", networks=["net"])
    m.link("net", "n", "c", bidirectional=True, properties={"latency": {"delay": "50ms"}})
    with emulation(m.build(), shaping=mechanism) as emu:
        ip = {name: emu.plan.instance(name).interface("net").ip for name in ("n.1", "n.2", "c.1")}
        to_c, _ = rtts(emu.hosts["n.1"], ip["c.1"], 50, 0.05)
        to_n, _ = rtts(emu.hosts["n.1"], ip["n.2"], 50, 0.05)
        from_c, _ = rtts(emu.hosts["c.1"], ip["n.2"], 50, 0.05)  # the rule names the label: every replica
        for name, values, expected in (("n.1 <-> c.1", to_c, 100), ("n.1 <-> n.2", to_n, 10),
                                       ("c.1 <-> n.2", from_c, 100)):
            rtt = statistics.median(values)
            assert -1 <= rtt - expected <= 0.02 * expected + 1 + LATE_MS, f"{name}: RTT {rtt:.2f}, expected {expected}"


def test_correlated_jitter_makes_successive_delays_alike_or_is_reported_as_not_applied(mechanism):
    # each uplink: 100 ms +- 40 ms, each sample 75% the previous one (netem's correlation); the
    # downlinks are unshaped, so a ping's RTT is the sum of two such uplinks
    model = pair({"uplink": {"latency": {"delay": "100ms", "deviation": "40ms", "correlation": "75%"}}}).build()
    with emulation(model, shaping=mechanism) as emu:
        values, _ = rtts(emu.hosts["n.1"], emu.plan.instance("n.2").interface("net").ip, 300, 0.02)
        mean = statistics.fmean(values)
        lag1 = (sum((x - mean) * (y - mean) for x, y in zip(values, values[1:]))
                / sum((x - mean) ** 2 for x in values))
        not_applied = emu.shaping_report()["not_applied"]
        if mechanism == NETEM:
            # sch_netem takes its correlated samples modulo the jitter range, which undoes the
            # correlation (compile.tc.netem_ignores): the emulation must say so, not pretend. Should
            # a kernel honour it, this fails: then drop the report for that kernel.
            assert len(not_applied) == 2 and all("delay correlation 75%" in line for line in not_applied)
            assert abs(lag1) < 0.25, f"lag-1 autocorrelation {lag1:.2f}: does this kernel's netem correlate?"
        else:
            # independent samples give about 0; an AR(1) process with coefficient 0.75 gives 0.75
            assert not_applied == []
            assert lag1 >= 0.5, f"lag-1 autocorrelation of the RTTs {lag1:.2f}, expected about 0.75"


def test_tcp_fills_a_10_mbit_link_with_50_ms_delay(mechanism):
    model = pair({"bidirectional": {"bandwidth": "10Mbps", "latency": {"delay": "50ms"}}}).build()
    with emulation(model, shaping=mechanism) as emu:
        a, b = emu.hosts["n.1"], emu.hosts["n.2"]
        server = b.popen(["iperf3", "-s", "-1"])
        try:
            wait_until(lambda: ":5201" in b.cmd("ss -ltn"), timeout=5)
            result = json.loads(a.cmd(f"iperf3 -c {emu.plan.instance('n.2').interface('net').ip} -t 10 -O 3 -J"))
        finally:
            server.kill()
            server.wait()
        goodput = result["end"]["sum_received"]["bits_per_second"] / 1e6
        assert goodput >= 9.0, f"{goodput:.2f} Mbit/s"


def test_a_delay_change_takes_effect_within_50_ms_with_a_tcp_flow_alive(mechanism):
    model = pair({"bidirectional": {"bandwidth": "20Mbps", "latency": {"delay": "5ms"}}}).build()
    with emulation(model, shaping=mechanism) as emu:
        a, b = emu.hosts["n.1"], emu.hosts["n.2"]
        target = emu.plan.instance("n.2").interface("net").ip
        server = b.popen(["iperf3", "-s", "-1"])
        wait_until(lambda: ":5201" in b.cmd("ss -ltn"), timeout=5)
        flow = a.popen(["iperf3", "-c", str(target), "-t", "6", "-b", "2M", "-J"])
        pinger = a.popen(["ping", "-n", "-D", "-i", "0.005", "-c", "700", "-W", "2", str(target)])
        time.sleep(1.5)
        called = time.time()
        patch = QoSPatch(delay=0.075)  # bidirectional 150 ms, each host's half of each direction
        for instance in emu.plan.instances:
            interface = instance.interface("net")
            interface.uplink, interface.downlink = interface.uplink.patched(patch), interface.downlink.patched(patch)
        emu.reshape()
        returned = time.time()
        out, _ = pinger.communicate(timeout=30)
        report, _ = flow.communicate(timeout=30)
        server.wait(timeout=10)
        assert json.loads(report)["end"]["sum_received"]["bytes"] > 0, "the TCP flow did not survive the change"
        replies = [(float(t) - float(rtt) / 1000, float(rtt))
                   for t, rtt in re.findall(r"\[([\d.]+)\].*time=([\d.]+) ms", out.decode())]
        # with the call taking under 50 ms, pings sent 50 ms after it began; where it may take longer
        # (CHANGE_S), pings sent after it returned
        after = [rtt for sent, rtt in replies if sent >= max(called + 0.050, returned)]
        assert after and min(after) > 280, f"a ping sent 50 ms after the call still had {min(after):.1f} ms"
        assert returned - called < CHANGE_S, f"the change took {1000 * (returned - called):.1f} ms to apply"


def test_a_dead_delay_line_is_reported_and_restarted(machine):
    if not probe().userspace_shaping:
        pytest.skip("no user-space shaping on this machine")
    events = []
    model = pair({"bidirectional": {"latency": {"delay": "20ms"}}}).build()
    with emulation(model, shaping=USERSPACE) as emu:
        emu._on_state = lambda state, detail: events.append(state)
        delayline = emu.shaper.delayline
        old = delayline.pid
        os.kill(old, signal.SIGKILL)
        assert wait_until(lambda: delayline.pid not in (None, old) and delayline.alive(), timeout=5)
        assert wait_until(lambda: "running" in events, timeout=5)
        assert events[0] == "degraded", events
        values, _ = rtts(emu.hosts["n.1"], emu.plan.instance("n.2").interface("net").ip, 10, 0.05)
        assert statistics.median(values) == pytest.approx(40, abs=2)  # the delay is back
