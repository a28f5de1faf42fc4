"""Moving devices and changing links, with real containers, links and traffic.

Handover: a moved instance is reachable on its new network within 200 ms of the
call and unreachable on the old one, its names resolve to its new address
everywhere, its processes keep running, and the target network's shaping holds;
make-before-break leaves no gap, break-before-make a measured one.

Traces: TCP goodput follows a rate trace stepping 2, 10, 5 Mbit/s each second
(within 10% after each step's first 200 ms); ping RTT follows a delay trace
20 -> 80 -> 40 ms (within 2% + 1 ms); a Mahimahi trace replays at its mean rate
(within 5%).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import BASE_IMAGE, assert_clean, emulation, snapshot, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]
SUPPORT = Path(__file__).parents[1] / "support"
GOODPUT = 1448 / 1514  # TCP payload of a full frame: the share of a link's rate goodput gets


def handover_model(r2_delay: str = "20ms"):
    from fogify_net.model import ModelBuilder

    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("r1", bidirectional={"bandwidth": "100Mbps"})
    m.network("r2", bidirectional={"bandwidth": "100Mbps", "latency": {"delay": r2_delay}})
    m.network("r3", capacity=1)
    m.blueprint("car", node="n", service="app", networks=["r1"])
    m.blueprint("e1", node="n", service="app", networks=["r1"])
    m.blueprint("e2", node="n", service="app", networks=["r2"])
    return m.build()


def act(emu, kind: str, **params):
    from fogify_net.actions.runner import ActionRunner
    from fogify_net.model.actions import parse_action

    return ActionRunner(emu).execute(parse_action(kind, params))  # as the API does: under the deployment's lock


def start_probe(host, targets, duration: float, interval: float = 0.005):
    return host.popen(["python3", str(SUPPORT / "probe.py"), "--interval", str(interval), "--duration",
                       str(duration), *map(str, targets)], stdout=subprocess.PIPE, text=True)


def probe_result(proc) -> dict:
    out, _ = proc.communicate(timeout=30)
    return json.loads(out)


def answered(result: dict, target) -> list[float]:
    """Send times of the requests to `target` that were answered."""
    sent = dict((seq, t) for seq, t in result["sent"][str(target)])
    return sorted(sent[seq] for seq, _ in result["replies"][str(target)] if seq in sent)


def resolve_in(emu, instance: str, name: str) -> str:
    code, output = emu.hosts[instance].dexec(["getent", "hosts", name])
    return output.split()[0] if code == 0 and output.strip() else ""


def ping_rtts(host, address, count: int = 10) -> list[float]:
    out = host.cmd(f"ping -n -c {count} -i 0.05 -W 1 {address}")
    return [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]


def test_a_moved_instance_keeps_its_processes_and_takes_the_new_networks_address_names_and_shaping():
    before = snapshot()
    with emulation(handover_model()) as emu:
        car, e1_ip, e2_ip = emu.hosts["car.1"], emu.plan.instance("e1.1").interfaces[0].ip, \
            emu.plan.instance("e2.1").interfaces[0].ip
        old_ip = emu.plan.instance("car.1").interface("r1").ip
        pid = emu.instance_pid("car.1")
        started = Path(f"/proc/{pid}/stat").read_text().split()[21]
        worker = car.container.exec_run(["sh", "-c", "sleep 600 & echo $!"]).output.decode().strip()
        assert ping_rtts(car, e1_ip, 3) and resolve_in(emu, "e1.1", "car") == str(old_ip)

        probe = start_probe(car, [e2_ip], duration=1.0, interval=0.002)
        time.sleep(0.2)
        called = time.time()
        outcome = act(emu, "move", instance_type="car", to="r2")
        result = probe_result(probe)

        new_ip = emu.plan.instance("car.1").interface("r2").ip
        assert outcome.result["instances"] == {"car.1": {"from": "r1", "to": "r2", "ip": str(new_ip)}}
        reachable = answered(result, e2_ip)
        assert reachable, "the car never reached the new network"
        assert reachable[0] - called < 0.2, f"reachable {1000 * (reachable[0] - called):.0f} ms after the call"

        assert not ping_rtts(car, e1_ip, 3)  # the old network is gone: no route
        assert not ping_rtts(emu.hosts["e1.1"], old_ip, 3)
        assert resolve_in(emu, "e2.1", "car") == str(new_ip) == resolve_in(emu, "e2.1", "car.1.r2")
        assert resolve_in(emu, "car.1", "tasks.e2.r2") == str(e2_ip)
        assert resolve_in(emu, "e1.1", "car") == "" and resolve_in(emu, "car.1", "e1") == ""

        rtts = ping_rtts(car, e2_ip, 10)  # r2's 20 ms each way
        assert len(rtts) >= 8 and 40 <= statistics.median(rtts) < 43, rtts
        assert emu.instance_pid("car.1") == pid and Path(f"/proc/{pid}/stat").read_text().split()[21] == started
        code, _ = car.container.exec_run(["kill", "-0", worker])
        assert code == 0, "a process started before the move died"

        act(emu, "move", instance_type="car.1", to="r1", overlap="100ms")  # and back, make-before-break
        assert ping_rtts(car, e1_ip, 3) and not ping_rtts(car, e2_ip, 2)
        assert [i.network for i in emu.plan.instance("car.1").interfaces] == ["r1"]
    assert_clean(before)


def longest_silence(result: dict, targets, start: float, end: float) -> float:
    """The longest time between two answered probes (to any target) sent within [start, end]."""
    times = sorted(t for target in targets for t in answered(result, target) if start <= t <= end)
    return max((b - a for a, b in zip(times, times[1:])), default=end - start)


def test_make_before_break_leaves_no_gap_and_break_before_make_a_measured_one():
    with emulation(handover_model(r2_delay="0ms")) as emu:
        car = emu.hosts["car.1"]
        e1_ip, e2_ip = emu.plan.instance("e1.1").interfaces[0].ip, emu.plan.instance("e2.1").interfaces[0].ip
        gaps = {}
        for overlap, target in ((0, "r2"), (0.3, "r1")):
            probe = start_probe(car, [e1_ip, e2_ip], duration=1.5)
            time.sleep(0.3)
            called = time.time()
            act(emu, "move", instance_type="car", to=target, overlap=overlap)
            done = time.time()
            result = probe_result(probe)
            gaps[overlap] = longest_silence(result, [e1_ip, e2_ip], called - 0.1, done + 0.3)
        print(f"longest silence: break-before-make {gaps[0] * 1000:.1f} ms, "
              f"make-before-break {gaps[0.3] * 1000:.1f} ms")
        assert gaps[0.3] < 0.03, gaps  # probes go every 5 ms: a few may be late, none of the networks gone
        assert gaps[0] > gaps[0.3], gaps


def test_others_act_during_a_make_before_break_overlap_and_a_restart_keeps_the_new_network():
    """The overlap lets the deployment's lock go (a network change answers meanwhile); a moved
    container that Docker restarts without us gets its links back on the network it moved to."""
    with emulation(handover_model()) as emu:
        car = emu.plan.instance("car.1")
        mover = threading.Thread(target=act, args=(emu, "move"), kwargs={"instance_type": "car", "to": "r2",
                                                                        "overlap": "3s"})
        mover.start()
        assert wait_until(lambda: [i.network for i in car.interfaces] == ["r2", "r1"], timeout=5)
        started = time.monotonic()
        act(emu, "network", instance_type="e1", network="r1", uplink={"bandwidth": "50Mbps"})
        assert time.monotonic() - started < 1.5 and mover.is_alive()
        mover.join(10)
        assert [i.network for i in car.interfaces] == ["r2"]

        e1_ip, e2_ip = emu.plan.instance("e1.1").interfaces[0].ip, emu.plan.instance("e2.1").interfaces[0].ip
        pid = emu.instance_pid("car.1")
        subprocess.run(["docker", "restart", "-t", "0", car.container], check=True, capture_output=True)
        assert wait_until(lambda: emu.instance_pid("car.1") not in (None, pid) and not emu.lost
                          and emu.state == "running", timeout=30), (emu.state, emu.detail)
        assert wait_until(lambda: bool(ping_rtts(emu.hosts["car.1"], e2_ip, 2)), timeout=10)
        assert 40 <= statistics.median(ping_rtts(emu.hosts["car.1"], e2_ip, 10)) < 43  # r2's shaping too
        assert not ping_rtts(emu.hosts["car.1"], e1_ip, 2)
        assert resolve_in(emu, "e2.1", "car") == str(car.interface("r2").ip)


def test_moves_are_refused_as_they_should_be():
    from fogify_net.errors import BadRequest, Conflict, NotFound

    with emulation(handover_model()) as emu:
        with pytest.raises(BadRequest, match="car.1 is not on network 'r2'"):
            act(emu, "move", instance_type="car", **{"from": "r2", "to": "r3"})
        assert act(emu, "move", instance_type="e1", to="r1").result == {"instances": {}, "unchanged": ["e1.1"]}
        act(emu, "move", instance_type="e1", to="r3")
        with pytest.raises(BadRequest, match="holds at most 1 instances"):
            act(emu, "move", instance_type="e2", to="r3")
        with pytest.raises(NotFound, match="unknown network"):
            act(emu, "move", instance_type="car", to="r9")
        act(emu, "crash", instance_type="car")
        with pytest.raises(Conflict, match="crashed"):
            act(emu, "move", instance_type="car", to="r2")


# --- traces ----------------------------------------------------------------------------------------


def trace_model(network_trace: dict, bandwidth: str = "100Mbps"):
    from fogify_net.model import ModelBuilder

    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": bandwidth}, trace={**network_trace, "start": "action"})
    m.blueprint("a", node="n", service="app", networks=["lan"], replicas=2)
    return m.build()


def goodput_run(emu, seconds: float, name: str = "lan") -> tuple[list[tuple[float, int]], float]:
    """Start the trace and a TCP flow a.1 -> a.2; (seconds since the trace's start, bytes received) samples."""
    from fogify_net.traces.player import TracePlayer

    sender, receiver = emu.hosts["a.1"], emu.hosts["a.2"]
    address = emu.plan.instance("a.2").interfaces[0].ip
    rx = receiver.popen(["nice", "-n", "-5", "python3", str(SUPPORT / "goodput.py"), "receive"],
                        stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        player = TracePlayer(emu)
        player.start(name)
        origin = player.get(name).started
        tx = sender.popen(["nice", "-n", "-5", "python3", str(SUPPORT / "goodput.py"), "send", str(address),
                           "--seconds", str(seconds)])
        tx.wait(timeout=seconds + 30)
        out, _ = rx.communicate(timeout=30)
        player.close()
    finally:
        rx.kill()
    samples = [(float(t) - origin, int(b)) for t, b in (line.split() for line in out.splitlines())]
    return samples, player.status()[0]["lateness_ms"]["p95"]


def bytes_at(samples: list[tuple[float, int]], t: float) -> float:
    if t <= samples[0][0]:
        return samples[0][1]
    for (ta, ba), (tb, bb) in zip(samples, samples[1:]):
        if ta <= t <= tb:
            return ba + (bb - ba) * (t - ta) / (tb - ta) if tb > ta else bb
    return samples[-1][1]


def mbits(samples, start: float, end: float) -> float:
    return (bytes_at(samples, end) - bytes_at(samples, start)) * 8 / (end - start) / 1e6


def test_tcp_goodput_follows_a_rate_trace_stepping_every_second():
    points = [{"time_s": 0, "bandwidth": "2Mbps"}, {"time_s": 1, "bandwidth": "10Mbps"},
              {"time_s": 2, "bandwidth": "5Mbps"}]
    with emulation(trace_model({"points": points, "loop": True})) as emu:
        samples, late = goodput_run(emu, seconds=7.2)
    rows = []
    for step in range(1, 7):  # the first second also holds the connection's start
        wanted = [2, 10, 5][step % 3] * GOODPUT
        got = mbits(samples, step + 0.2, step + 1.0)
        rows.append((step, round(wanted, 2), round(got, 2), round(got / wanted, 3)))
    print("step, wanted Mbit/s, goodput Mbit/s, ratio:", rows, f"step lateness p95 {late} ms, load "
          f"{os.getloadavg()[0]:.1f}")
    # A fall in rate can cost TCP a loss recovery inside the 0.8 s window (seen once: 0.76 of
    # 2 Mbit/s right after 5 Mbit/s, load 3), and on a loaded machine a step applied late leaves
    # part of the window at the previous rate (seen once: 1.13 of 2 Mbit/s after 5, with a QEMU VM
    # busy beside it); the same steps a cycle later held 0.99 and 1.03. One step may stray that
    # far; the others hold the rate within 10 %.
    assert all(0.7 <= ratio <= 1.3 for *_, ratio in rows), rows
    assert sum(0.9 <= ratio <= 1.1 for *_, ratio in rows) >= len(rows) - 1, rows


def test_ping_rtt_follows_a_delay_trace():
    import re

    from fogify_net.traces.player import TracePlayer

    points = [{"time_s": 0, "delay": "20ms"}, {"time_s": 1, "delay": "80ms"}, {"time_s": 2, "delay": "40ms"}]
    with emulation(trace_model({"points": points, "loop": False})) as emu:
        a1, address = emu.hosts["a.1"], emu.plan.instance("a.2").interfaces[0].ip
        ping = a1.popen(["ping", "-n", "-D", "-i", "0.02", "-c", "160", str(address)], stdout=subprocess.PIPE,
                        text=True)
        time.sleep(0.2)
        player = TracePlayer(emu)
        player.start("lan")
        origin = player.get("lan").started
        out, _ = ping.communicate(timeout=20)
        player.close()
    replies = [(float(m[1]) - float(m[2]) / 1000 - origin, float(m[2]))  # (sent, rtt)
               for m in re.finditer(r"^\[(\d+\.\d+)\].*time=([\d.]+) ms", out, re.M)]
    for step, delay in enumerate((20, 80, 40)):
        rtts = [rtt for sent, rtt in replies if step + 0.2 <= sent < step + 1]
        wanted = 2 * delay  # the path's delay, each way
        assert len(rtts) > 20, (step, len(rtts))
        assert abs(statistics.median(rtts) - wanted) <= 0.02 * wanted + 1, (step, statistics.median(rtts))


def test_a_mahimahi_trace_replays_at_its_mean_rate():
    from fogify_net.model.traces import MAHIMAHI_PACKET, mahimahi_mean_rate

    stamps = []  # 6 s: half a second each of 4, 12, 8, 16, 2, 10 ... Mbit/s of 1500-byte packets
    for slot, mbit in enumerate([4, 12, 8, 16, 2, 10] * 2):
        per_ms = mbit * 1e6 / 8 / MAHIMAHI_PACKET / 1000
        count, carry = 0, 0.0
        for ms in range(slot * 500, slot * 500 + 500):
            carry += per_ms
            while carry >= 1:
                stamps.append(ms)
                carry -= 1
                count += 1
    stamps.append(6000)
    mean = mahimahi_mean_rate(stamps)
    with emulation(trace_model({"mahimahi": stamps, "direction": "downlink"})) as emu:
        samples, _ = goodput_run(emu, seconds=12.5, name="lan/downlink")
    got = mbits(samples, 0.5, 12.5) * 1e6
    expected = mean * 1448 / 1500  # TCP payload of each 1500-byte packet
    print(f"Mahimahi trace mean {mean / 1e6:.2f} Mbit/s of packets, goodput {got / 1e6:.2f} Mbit/s, "
          f"ratio {got / expected:.3f}")
    assert 0.95 <= got / expected <= 1.05
