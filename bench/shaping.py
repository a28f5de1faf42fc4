"""Cost and accuracy of the user-space delay line, beside an unshaped link in the same run.

Three hosts (network namespaces) on one bridge: A sends a UDP load to B through
A's uplink (HTB at the rate + the delay line), C pings B through its own delay
line queue in the same helper, so the probe RTT shows what the load does to
the helper's timing. Each rate is run twice: unshaped (no HTB, queues unbound,
rules bypassed) and shaped. Prints a Markdown table.

    sudo PYTHONPATH=. /opt/fogify-net/venv/bin/python bench/shaping.py [--duration 5] [--delay-ms 20]

Needs root, iperf3, ping and a built fogify-delayd (make -C fogify_net/host/delayline).
Everything it creates is named fgtdb* and removed at the end, also on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from fogify_net.host.delayline import DelayLine

BRIDGE = "fgtdbbr0"
HOSTS = {"A": "10.97.0.1", "B": "10.97.0.2", "C": "10.97.0.3"}
LOAD_QUEUE, PROBE_QUEUE = 32301, 32303
PROBE_DELAY_MS = 5.0  # below 10 ms ping prints RTTs to 10 us
COMMENT = "fgtdb-bench"
PAYLOAD = 1400  # UDP bytes per datagram: 1442 bytes on the wire with headers


def sh(*args: str, check: bool = True, timeout: float = 60) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout).stdout


def rules() -> list[tuple[str, str, list[str]]]:
    return [
        ("filter", "FORWARD", ["-i", "fgt+", "-o", "fgt+", "-j", "ACCEPT"]),
        ("raw", "PREROUTING", ["-i", BRIDGE, "-j", "CT", "--notrack"]),
        ("mangle", "PREROUTING", ["-m", "physdev", "--physdev-in", "fgtdbAe0",
                                  "-j", "NFQUEUE", "--queue-num", str(LOAD_QUEUE), "--queue-bypass"]),
        ("mangle", "PREROUTING", ["-m", "physdev", "--physdev-in", "fgtdbCe0",
                                  "-j", "NFQUEUE", "--queue-num", str(PROBE_QUEUE), "--queue-bypass"]),
    ]


def teardown() -> None:
    for table, chain, spec in rules():
        while subprocess.run(["iptables", "-t", table, "-D", chain, *spec, "-m", "comment", "--comment", COMMENT],
                             check=False, capture_output=True).returncode == 0:
            pass
    for host in HOSTS:
        sh("ip", "netns", "del", f"fgtdb{host}", check=False)
        sh("ip", "link", "del", f"fgtdb{host}e0", check=False)
    sh("ip", "link", "del", BRIDGE, check=False)


def setup() -> None:
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "link", "set", BRIDGE, "up")
    for host, address in HOSTS.items():
        ns = f"fgtdb{host}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"{ns}e0", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", f"{ns}e0", "master", BRIDGE, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
    for table, chain, spec in rules():
        position = ["-I", chain, "1"] if chain == "FORWARD" else ["-A", chain]
        sh("iptables", "-t", table, *position, *spec, "-m", "comment", "--comment", COMMENT)


def in_ns(host: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", f"fgtdb{host}", *args]


def wait_listening(host: str, tcp_port: int = 5201, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not sh(*in_ns(host, "ss", "-Hltn", f"sport = :{tcp_port}")).strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 server in {host} did not start")
        time.sleep(0.05)


def cpu_ms(pid: int) -> float:
    """CPU time the process ran, exact (scheduler runtime, not tick samples)."""
    with open(f"/proc/{pid}/sched") as f:
        return next(float(x.split(":")[1]) for x in f if x.startswith("se.sum_exec_runtime"))


@dataclass
class Row:
    name: str
    offered: str
    received_mbit: float
    loss_pct: float
    pps: float
    rtt_ms: float
    rtt_p99_ms: float
    error_ms: float | None = None
    error_p99_ms: float | None = None
    late_avg_us: float | None = None
    late_max_us: float | None = None
    maxheld: int | None = None
    cpu_ms_per_10k: float | None = None
    cpu_pct: float | None = None


def run(line: DelayLine, name: str, rate_mbit: float | None, delay_ms: float | None, duration: float) -> Row:
    """One load run; rate None: as fast as iperf3 sends; delay None: unshaped (no HTB, queues unbound)."""
    shaped = delay_ms is not None
    if shaped:
        line.set_queue(LOAD_QUEUE, delay_ms)
        line.set_queue(PROBE_QUEUE, PROBE_DELAY_MS)
        if rate_mbit is not None:
            tc = in_ns("A", "tc")
            sh(*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "5:", "htb", "default", "1")
            sh(*tc, "class", "add", "dev", "eth0", "parent", "5:", "classid", "5:1", "htb",
               "rate", f"{rate_mbit}mbit", "burst", "15k")
    offered = f"{0.95 * rate_mbit:g}M" if rate_mbit is not None else "0"  # under the HTB rate: no standing queue
    server = subprocess.Popen(in_ns("B", "iperf3", "-s", "-1", "-J"), stdout=subprocess.PIPE, text=True)
    try:
        wait_listening("B")
        cpu0, stats0 = (cpu_ms(line.pid), line.stats()) if shaped else (0.0, {})
        client = subprocess.Popen(in_ns("A", "iperf3", "-c", HOSTS["B"], "-u", "-b", offered, "-l", str(PAYLOAD),
                                        "-t", str(duration)), stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        ping = sh(*in_ns("C", "ping", "-n", "-c", str(int((duration - 1) / 0.01)), "-i", "0.01", "-W", "2",
                         HOSTS["B"]), timeout=duration + 30)
        if client.wait(timeout=duration + 30) != 0:
            raise RuntimeError(f"iperf3 client failed in run {name!r}")
        received = json.loads(server.communicate(timeout=30)[0])["end"]["sum_received"]
        cpu1, stats1 = (cpu_ms(line.pid), line.stats()) if shaped else (0.0, {})
    finally:
        server.kill()
        server.wait()
        sh(*in_ns("A", "tc", "qdisc", "del", "dev", "eth0", "root"), check=False)
        if shaped:
            line.del_queue(LOAD_QUEUE)
            line.del_queue(PROBE_QUEUE)

    # ping prints each RTT with 3 significant digits; its summary average has microseconds
    rtt_avg = float(ping.strip().splitlines()[-1].split("=")[1].split("/")[1])
    rtts = sorted(float(m[1]) for m in re.finditer(r"time=([\d.]+) ms", ping))
    row = Row(name, f"{offered}bit/s" if offered != "0" else "unlimited", received["bits_per_second"] / 1e6,
              received["lost_percent"], received["packets"] / duration, rtt_avg, rtts[int(0.99 * (len(rtts) - 1))])
    if shaped:
        load = stats1[LOAD_QUEUE]
        row.pps = (load.pkts - (stats0[LOAD_QUEUE].pkts if LOAD_QUEUE in stats0 else 0)) / duration
        row.late_avg_us, row.late_max_us, row.maxheld = load.late_avg_us, load.late_max_us, load.maxheld
        handled = sum(s.pkts for s in stats1.values()) - sum(s.pkts for s in stats0.values())
        row.cpu_ms_per_10k = (cpu1 - cpu0) / max(handled, 1) * 10_000
        row.cpu_pct = (cpu1 - cpu0) / (duration + 1.0) / 10  # stats span ~1 s more than the load
    return row


def table(rows: list[Row]) -> str:
    head = ("| link | offered | received Mbit/s | UDP loss % | pps | probe RTT avg / p99 ms | "
            "probe RTT error: avg / p99 ms | lateness avg / max us | "
            "max held | helper CPU ms / 10k pkts | helper CPU % of one core |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        def opt(value: float | None, fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        lines.append(
            f"| {r.name} | {r.offered} | {r.received_mbit:.2f} | {r.loss_pct:.2f} | {r.pps:,.0f} | "
            f"{r.rtt_ms:.3f} / {r.rtt_p99_ms:.3f} | {opt(r.error_ms, '+.3f')} / {opt(r.error_p99_ms, '+.3f')} | "
            f"{opt(r.late_avg_us, '.0f')} / {opt(r.late_max_us, '.0f')} | {opt(r.maxheld, 'd')} | "
            f"{opt(r.cpu_ms_per_10k, '.1f')} | {opt(r.cpu_pct, '.1f')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay of the load's queue")
    parser.add_argument("--long-delay-ms", type=float, default=3000.0, help="delay of the extra 100 Mbit/s run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2

    teardown()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fgtdb-") as run_dir:
        line = DelayLine(run_dir=run_dir)
        try:
            setup()
            line.start()
            for rate in (1, 10, 100, None):
                label = f"HTB {rate} Mbit/s +" if rate else "no HTB,"
                base = run(line, "unshaped", rate, None, args.duration)
                rows.append(base)
                for delay in (args.delay_ms, args.long_delay_ms) if rate == 100 else (args.delay_ms,):
                    duration = max(args.duration, 2 * delay / 1000 + 2)
                    shaped = run(line, f"{label} delay line {delay:g} ms", rate, delay, duration)
                    shaped.error_ms = shaped.rtt_ms - base.rtt_ms - PROBE_DELAY_MS
                    shaped.error_p99_ms = shaped.rtt_p99_ms - base.rtt_p99_ms - PROBE_DELAY_MS
                    rows.append(shaped)
        finally:
            line.stop()
            teardown()
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs; {args.duration:g} s per run; UDP {PAYLOAD} B datagrams. Probe: ping every 10 ms "
          f"from a third host through its own {PROBE_DELAY_MS:g} ms queue of the same helper; probe RTT error = "
          "probe RTT - unshaped probe RTT - probe delay. Lateness, max held: the load's queue (verdict time - "
          "planned release). Helper CPU: its scheduler runtime over all packets it handled "
          "(load and probes). Received Mbit/s counts what arrived before iperf3 ended, so a long delay shows less.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
