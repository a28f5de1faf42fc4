"""How much load each mechanism carries faithfully on this machine, where it stops (the knee), and
whether the fidelity monitor says so.

1. The delay line: a UDP load of 1500-byte packets (iperf3, 4 MB socket buffers) from host A to B
   through a 20 ms queue of fogify-delayd, at rising rates; C pings B every 10 ms through its own
   5 ms queue of the same helper. Each rate runs unshaped first (no queues bound) as the baseline.
   Delay error: the probe's RTT p99 minus the baseline's minus 5 ms, and the load queue's own
   lateness p99 (the helper's histogram); rate error: the share of the offered load not received.
2. HTB alone: four links, each from its own sender to its own receiver, each shaped by HTB at the
   same rate on the sender's interface (as an uplink), one TCP flow each; rising rates. A fifth
   link at 10 Mbit/s carries pings every 10 ms. Rate error: the worst link's goodput against its
   rate x 1448/1514 (TCP/IP headers); delay error: the probe's RTT p99 against the same probe on
   an idle machine.
3. Busy instances: a deployment (through the Controller, sampling every second, as the API runs it)
   of 0.5-CPU instances, k of them busy with a CPU loop (stress, 100% of their CPU), k rising, and
   two more instances pinging each other every 10 ms over a 5 ms delay line. Rate error: the CPU
   the least served busy instance got against its 0.5; delay error: the pings' RTT p99 against
   their p99 with no instance busy (the first load; ping shows RTTs over 10 ms to 0.1 ms).

For each load the fidelity monitor runs on the same readings as in a deployment (in section 3 it is
the deployment's own) and its verdict is printed beside the measured errors. A load is faithful
when the p99 delay error is under 1 ms and the rate error under 1%; the knee is the largest
faithful load. Prints Markdown tables; the load (uptime) is printed with each section, since other
processes on a shared machine move these figures.

    sudo PYTHONPATH=. /opt/fogify-net/venv/bin/python bench/capacity.py [--only delay,htb,instances]

Needs root, iperf3, ping, the base image and fogify-delayd. Everything it creates is named fgtcp*
(or is a fogify-net deployment, which it removes) and removed at the end, also on errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402

from fogify_net.host.delayline import DelayLine  # noqa: E402
from fogify_net.host.fidelity import DelayQueue, HostCpuReader, LinkQueue, Readings  # noqa: E402
from fogify_net.host.tcstats import ClassReader  # noqa: E402
from fogify_net.monitoring.fidelity import FidelityMonitor, late_quantile  # noqa: E402

BRIDGE = "fgtcpbr0"
COMMENT = "fgtcp-bench"
LOAD_QUEUE, PROBE_QUEUE = 32401, 32403
PROBE_DELAY_MS = 5.0
LOAD_DELAY_MS = 20.0
HTB_LINKS = 4
GOODPUT = 1448 / 1514
FAITHFUL_DELAY_MS = 1.0
FAITHFUL_RATE_PCT = 1.0
IMAGE = "fogify-net/base:latest"


def sh(*args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout, input=stdin).stdout


def uptime() -> str:
    return sh("uptime").strip().split("load average:")[-1].strip()


def ns(host: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", f"fgtcp{host}", *args]


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] if ordered else math.nan


def rtts(ping_output: str) -> list[float]:
    return [float(v) for v in re.findall(r"time=([\d.]+) ms", ping_output)]


@dataclass
class Point:
    """One load: what was offered, the errors measured, and what the monitor said."""

    load: str
    delay_p99_ms: float  # added error, p99
    rate_error_pct: float
    extra: dict[str, str] = field(default_factory=dict)
    verdict: str = ""

    @property
    def faithful(self) -> bool:
        return self.delay_p99_ms < FAITHFUL_DELAY_MS and self.rate_error_pct < FAITHFUL_RATE_PCT


class MonitorThread:
    """The fidelity monitor once a second on `read()`'s readings; remembers the reasons it gave."""

    def __init__(self, read: Callable[[], Readings]):
        self.read = read
        self.monitor = FidelityMonitor()
        self.reasons: list[str] = []
        self.states: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            verdict = self.monitor.observe(time.time(), self.read())
            self.states.append(verdict.state)
            seen = {re.sub(r"[\d.]+", "#", x.split(" for ")[0]) for x in self.reasons}
            self.reasons += [r for r in verdict.reasons if re.sub(r"[\d.]+", "#", r.split(" for ")[0]) not in seen]
            if self._stop.wait(1.0):
                return

    def __enter__(self) -> MonitorThread:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if "degraded" not in self.states:
            return "ok"
        checks = sorted({short_reason(r) for r in self.reasons})
        return "degraded: " + "; ".join(checks)[:160]


def short_reason(reason: str) -> str:
    """A reason without its duration; the host's keeps how long tasks waited for a CPU (what tells a
    busy machine from a starved one)."""
    head = reason.split(" for ")[0]
    waited = re.search(r"waited for a CPU (\d+)%", reason)
    return f"{head}, waited {waited.group(1)}%" if head.startswith("host CPU") and waited else head


# --- namespaces on a bridge ------------------------------------------------------------------------


def iptables_rules(queues: dict[str, int]) -> list[tuple[str, str, list[str]]]:
    rules = [("filter", "FORWARD", ["-i", "fgt+", "-o", "fgt+", "-j", "ACCEPT"]),
             ("raw", "PREROUTING", ["-i", BRIDGE, "-j", "CT", "--notrack"])]
    rules += [("mangle", "PREROUTING", ["-m", "physdev", "--physdev-in", f"fgtcp{host}e0", "-j", "NFQUEUE",
                                        "--queue-num", str(queue), "--queue-bypass"]) for host, queue in queues.items()]
    return rules


class Bridge:
    """Namespaces fgtcp<name> with one veth on a bridge each, addresses 10.96.0.<i>, optional NFQUEUE rules."""

    def __init__(self, hosts: list[str], queues: dict[str, int] | None = None):
        self.hosts = {host: f"10.96.0.{i + 1}" for i, host in enumerate(hosts)}
        self.rules = iptables_rules(queues or {})

    def __enter__(self) -> Bridge:
        self.down()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "link", "set", BRIDGE, "up")
        for host, address in self.hosts.items():
            name = f"fgtcp{host}"
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", f"{name}e0", "type", "veth", "peer", "name", "eth0", "netns", name)
            sh("ip", "link", "set", f"{name}e0", "master", BRIDGE, "up")
            sh(*ns(host, "ip", "link", "set", "lo", "up"))
            sh(*ns(host, "ip", "link", "set", "eth0", "up"))
            sh(*ns(host, "ip", "addr", "add", f"{address}/24", "dev", "eth0"))
        for table, chain, spec in self.rules:
            position = ["-I", chain, "1"] if chain == "FORWARD" else ["-A", chain]
            sh("iptables", "-t", table, *position, *spec, "-m", "comment", "--comment", COMMENT)
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def down(self) -> None:
        for table, chain, spec in self.rules:
            while subprocess.run(["iptables", "-t", table, "-D", chain, *spec, "-m", "comment", "--comment", COMMENT],
                                 capture_output=True).returncode == 0:
                pass
        for host in self.hosts:
            sh("ip", "netns", "del", f"fgtcp{host}", check=False)
            sh("ip", "link", "del", f"fgtcp{host}e0", check=False)
        sh("ip", "link", "del", BRIDGE, check=False)


def iperf_server(host: str, port: int = 5201) -> subprocess.Popen:
    server = subprocess.Popen(ns(host, "iperf3", "-s", "-1", "-J", "-p", str(port)), stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not sh(*ns(host, "ss", "-Hltn", f"sport = :{port}")).strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 server in {host} did not start")
        time.sleep(0.05)
    return server


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


# --- 1. the delay line -----------------------------------------------------------------------------


def delay_readings(line: DelayLine, host: HostCpuReader) -> Readings:
    readings = Readings({"bench": host.read()})
    names = {LOAD_QUEUE: ("A", "uplink"), PROBE_QUEUE: ("C", "uplink")}
    for queue, stats in line.stats().items():
        if queue in names:
            instance, direction = names[queue]
            readings.delays.append(DelayQueue(instance, "bench", direction, "", "bench", queue, LOAD_DELAY_MS,
                                              stats.pkts, stats.released, stats.dropped, stats.held, stats.late_hist))
    return readings


def delay_run(line: DelayLine | None, host: HostCpuReader, rate: float, duration: float, bridge: Bridge) -> dict:
    """One UDP load at `rate` Mbit/s A -> B, pinged by C; shaped when `line` is given."""
    if line is not None:
        line.set_queue(LOAD_QUEUE, LOAD_DELAY_MS)
        line.set_queue(PROBE_QUEUE, PROBE_DELAY_MS)
    server = iperf_server("B")
    try:
        before = (cpu_s(line.pid), line.stats()) if line is not None else None
        watch = MonitorThread(lambda: delay_readings(line, host)) if line is not None else None
        if watch:
            watch.__enter__()
        client = subprocess.Popen(ns("A", "iperf3", "-c", bridge.hosts["B"], "-u", "-b", f"{rate}M", "-l", "1472",
                                     "-w", "4M", "-t", str(duration)), stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        probe = sh(*ns("C", "ping", "-n", "-c", str(int((duration - 1) / 0.01)), "-i", "0.01", "-W", "2",
                       bridge.hosts["B"]), timeout=duration + 30)
        client.wait(duration + 30)
        received = json.loads(server.communicate(timeout=30)[0])["end"]["sum"]
        if watch:
            watch.__exit__()
        after = (cpu_s(line.pid), line.stats()) if line is not None else None
    finally:
        server.kill()
        server.wait()
        if line is not None:
            line.del_queue(LOAD_QUEUE)
            line.del_queue(PROBE_QUEUE)
    result = {"received": (received["packets"] - received["lost_packets"]) * 1472 * 8 / duration / 1e6,
              "lost": received["lost_percent"], "rtts": rtts(probe)}
    if line is not None and before is not None and after is not None:
        load = after[1][LOAD_QUEUE]
        result.update(late_p99=late_quantile(load.late_hist, 0.99) / 1000, dropped=load.dropped,
                      cpu=100 * (after[0] - before[0]) / (duration + 0.5), verdict=watch.summary())
    return result


def delay_line_curve(rates: list[float], duration: float) -> list[Point]:
    points = []
    with tempfile.TemporaryDirectory(prefix="fgtcp-") as run_dir, \
            Bridge(["A", "B", "C"], {"A": LOAD_QUEUE, "C": PROBE_QUEUE}) as bridge:
        line = DelayLine(run_dir=run_dir, name="fgtcp-delayd")
        host = HostCpuReader("bench")
        line.start()
        try:
            for rate in rates:
                base = delay_run(None, host, rate, duration, bridge)
                shaped = delay_run(line, host, rate, duration, bridge)
                error = p(shaped["rtts"], 0.99) - p(base["rtts"], 0.99) - PROBE_DELAY_MS
                points.append(Point(
                    f"{rate:g} Mbit/s", error, max(0.0, 100 * (1 - shaped["received"] / rate)),
                    {"received Mbit/s": f"{shaped['received']:.1f}",
                     "load lateness p99 ms": f"{shaped['late_p99']:.2f}",
                     "kernel drops": str(shaped["dropped"]), "helper CPU %": f"{shaped['cpu']:.0f}",
                     "unshaped: received, probe p99 ms": f"{base['received']:.1f}, {p(base['rtts'], 0.99):.3f}"},
                    shaped["verdict"]))
                print(f"  {points[-1]}", file=sys.stderr)
        finally:
            line.stop()
            host.close()
    return points


# --- 2. HTB alone ----------------------------------------------------------------------------------


def htb_curve(rates: list[float], duration: float) -> list[Point]:
    senders = [f"S{i}" for i in range(HTB_LINKS)] + ["P"]
    receivers = [f"R{i}" for i in range(HTB_LINKS)] + ["Q"]
    points = []
    with Bridge(senders + receivers) as bridge:
        classes = ClassReader()
        host = HostCpuReader("bench")
        keepers = {name: subprocess.Popen(ns(name, "sleep", "infinity")) for name in senders}  # a pid in each namespace
        pids = {name: proc.pid for name, proc in keepers.items()}
        try:
            def shape(name: str, mbit: float) -> None:
                sh(*ns(name, "tc", "qdisc", "del", "dev", "eth0", "root"), check=False)  # HTB's root cannot change
                sh(*ns(name, "tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1"))
                burst = max(15000, int(mbit * 1e6 / 8 / 1000))
                sh(*ns(name, "tc", "class", "replace", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate",
                       f"{mbit}mbit", "ceil", f"{mbit}mbit", "burst", str(burst), "cburst", str(burst)))
                limit = max(100, math.ceil(mbit * 1e6 / 8 * 0.1 / 1514))
                sh(*ns(name, "tc", "qdisc", "replace", "dev", "eth0", "parent", "1:1", "handle", "11:", "pfifo",
                       "limit", str(limit)))

            def readings() -> Readings:
                found = classes.read({pids[name]: ["eth0"] for name in senders[:HTB_LINKS]})
                result = Readings({"bench": host.read()})
                for name in senders[:HTB_LINKS]:
                    for c in found.get((pids[name], "eth0"), []):
                        result.links.append(LinkQueue(name, "bench", "uplink", "", "bench", time.monotonic(), c.rate,
                                                      c.bytes, c.packets, c.drops, c.overlimits, c.qlen, c.backlog))
                return result

            shape("P", 10)
            idle = rtts(sh(*ns("P", "ping", "-n", "-c", "300", "-i", "0.01", bridge.hosts["Q"])))
            for rate in rates:
                for name in senders[:HTB_LINKS]:
                    shape(name, rate)
                servers = [iperf_server(r) for r in receivers[:HTB_LINKS]]
                with MonitorThread(readings) as watch:
                    clients = [subprocess.Popen(ns(s, "iperf3", "-c", bridge.hosts[r], "-t", str(duration), "-O", "1",
                                                   "-J"), stdout=subprocess.PIPE, text=True)
                               for s, r in zip(senders, receivers[:HTB_LINKS])]
                    time.sleep(1.5)
                    probe = rtts(sh(*ns("P", "ping", "-n", "-c", str(int((duration - 2) / 0.01)), "-i", "0.01",
                                        bridge.hosts["Q"]), timeout=duration + 30))
                    goodputs = [json.loads(c.communicate(timeout=duration + 30)[0])["end"]["sum_received"]
                                ["bits_per_second"] / 1e6 for c in clients]
                for server in servers:
                    server.wait(10)
                worst = min(goodputs)
                points.append(Point(
                    f"{HTB_LINKS} x {rate:g} = {HTB_LINKS * rate:g} Mbit/s",
                    max(0.0, p(probe, 0.99) - p(idle, 0.99)), max(0.0, 100 * (1 - worst / (rate * GOODPUT))),
                    {"goodput per link Mbit/s": " ".join(f"{g:.0f}" for g in goodputs),
                     "probe RTT p99 ms (idle)": f"{p(probe, 0.99):.2f} ({p(idle, 0.99):.2f})"}, watch.summary()))
                print(f"  {points[-1]}", file=sys.stderr)
        finally:
            for proc in keepers.values():
                proc.kill()
                proc.wait()
            classes.close()
            host.close()
    return points


# --- 3. busy instances -----------------------------------------------------------------------------


def instances_model(busy: int) -> str:
    import yaml

    return yaml.safe_dump({
        "version": "3.7",
        "services": {"app": {"image": IMAGE, "command": ["sleep", "infinity"]}},
        "x-fogify": {
            "nodes": [{"name": "half", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000},
                                                        "memory": "128M"}}],
            "networks": [{"name": "lan", "bidirectional": {"bandwidth": "100Mbps", "latency": {"delay": "5ms"}}}],
            "topology": [{"node": "half", "service": "app", "label": "busy", "replicas": busy, "networks": ["lan"]},
                         {"node": "half", "service": "app", "label": "probe", "replicas": 2, "networks": ["lan"]}],
        },
    })


def instances_curve(counts: list[int], duration: float) -> list[Point]:
    from fogify_net.controller import Controller

    points = []
    counts = [0, *(k for k in counts if k)]  # no instance busy first: the probe's baseline
    idle: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fgtcp-") as data:
        controller = Controller(data_dir=data, run_dir="/run/fogify-net-bench", host_mhz=2000)
        try:
            controller.deploy(instances_model(max(counts)))
            while controller.status == "deploying":
                time.sleep(0.2)
            if controller.status != "running":
                raise RuntimeError(controller.message)
            emulation = controller.emulation
            target = str(emulation.plan.instance("probe.2").interface("lan").ip)
            deadline = time.monotonic() + 60  # let the machine settle after the deployment
            while controller.report()["fidelity"] != "ok" and time.monotonic() < deadline:
                time.sleep(0.5)
            for k in counts:
                began = time.time()
                if k:
                    controller.act("stress", {"instance_type": "busy", "instances": k, "cpu": 100,
                                              "duration": duration + 2})
                time.sleep(1.5)
                first = emulation.fidelity_readings()
                out = emulation.hosts["probe.1"].cmd(f"ping -n -c {int((duration - 2) / 0.01)} -i 0.01 {target}")
                last = emulation.fidelity_readings()
                probe = rtts(out)
                idle = idle or probe
                elapsed = last.hosts[emulation.node].at - first.hosts[emulation.node].at
                busy = [f"busy.{i}" for i in range(1, k + 1)]
                shares = [(last.instances[n].usage_ns - first.instances[n].usage_ns) / 1e9 / elapsed / 0.5
                          for n in busy if n in last.instances and n in first.instances]
                time.sleep(1.0)
                episodes = controller.store.episodes(from_ts=began, to_ts=time.time())
                kinds = {}
                for episode in episodes:  # one reason per check
                    kinds.setdefault(episode["check"], short_reason(episode["reason"]))
                verdict = "degraded: " + "; ".join(kinds[c] for c in sorted(kinds)) if kinds else "ok"
                points.append(Point(
                    f"{k} x 0.5 CPU = {k / 2:g} CPUs busy", max(0.0, p(probe, 0.99) - p(idle, 0.99)),
                    max(0.0, 100 * (1 - min(shares))) if shares else 0.0,
                    {"CPU got / quota (least, most)": f"{min(shares):.2f}, {max(shares):.2f}" if shares else "-",
                     "probe RTT p99 ms (idle)": f"{p(probe, 0.99):.2f} ({p(idle, 0.99):.2f})"}, verdict))
                print(f"  {points[-1]}", file=sys.stderr)
                while controller.emulation._stress.active():
                    time.sleep(0.2)
                time.sleep(6.0)  # the episodes of this load end (5 clean rounds) before the next
        finally:
            controller.close()
    return points


# --- output ----------------------------------------------------------------------------------------


def curve_table(title: str, points: list[Point]) -> str:
    extra = list(points[0].extra) if points else []
    rows = [[pt.load, f"{pt.delay_p99_ms:.3f}", f"{pt.rate_error_pct:.2f}", *pt.extra.values(),
             "yes" if pt.faithful else "**no**", pt.verdict] for pt in points]
    knee = None
    for pt in points:
        if not pt.faithful:
            break
        knee = pt.load
    table = markdown_table(["load", "p99 delay error ms", "rate error %", *extra, "faithful", "monitor"], rows,
                           "l" + "r" * (2 + len(extra)) + "ll")
    return (f"### {title}\n\n{table}\nKnee (the largest load faithful, with every smaller one): "
            f"**{knee or 'none'}** (faithful: p99 delay error < {FAITHFUL_DELAY_MS:g} ms and rate error "
            f"< {FAITHFUL_RATE_PCT:g}%).\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="delay,htb,instances", help="sections, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    parser.add_argument("--rates", default="50,100,200,300,400,500,600,700,800", help="delay line: Mbit/s")
    parser.add_argument("--htb-rates", default="100,250,500,1000,2000,4000", help="HTB: Mbit/s per link")
    parser.add_argument("--instances", default="0,1,2,3,4,5,6,8", help="busy instances of 0.5 CPU")
    parser.add_argument("--markdown", help="also append the tables to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    only = set(args.only.split(","))
    with machine_lock():
        if "delay" in only:
            load = uptime()
            points = delay_line_curve([float(r) for r in args.rates.split(",")], args.duration)
            emit(curve_table(f"The delay line: UDP 1500-byte packets through a {LOAD_DELAY_MS:g} ms queue", points)
                 + f"\nLoad average before / after: {load} / {uptime()}. {machine_line()}\n", args.markdown)
        if "htb" in only:
            load = uptime()
            points = htb_curve([float(r) for r in args.htb_rates.split(",")], args.duration + 2)
            emit(curve_table(f"HTB alone: {HTB_LINKS} links, one TCP flow each", points)
                 + f"\nLoad average before / after: {load} / {uptime()}. {machine_line()}\n", args.markdown)
        if "instances" in only:
            load = uptime()
            points = instances_curve([int(k) for k in args.instances.split(",")], args.duration + 3)
            emit(curve_table("Busy instances: 0.5 CPU each, a CPU loop in each busy one", points)
                 + f"\nLoad average before / after: {load} / {uptime()}. {machine_line()}\n", args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
