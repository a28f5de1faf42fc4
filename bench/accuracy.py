"""Shaping accuracy: configured against measured rate, delay and loss, through a deployed emulation.

Rates: TCP goodput with iperf3 on a link whose uplink (then downlink) is the
only limit, at 1, 10 and 100 Mbit/s; goodput is compared with the rate less
TCP/IP header overhead (1448 of 1514 bytes), so 100% means exact at layer 2.
Delay: mean ping RTT / 2 for a one-way delay of 5, 50, 150 and 3000 ms, beside
an unshaped link in the same run. Jitter: the RTT's standard deviation for
50 ms +- 10 ms (uniform), against the spread of the four shaping points a ping
crosses. Loss: ping loss over 2000 packets at 1% and 10% on the sender's uplink.
Prints a Markdown table.

    sudo /opt/fogify-net/venv/bin/python bench/accuracy.py [--shaping auto|netem|userspace] [--markdown FILE]
    sudo scripts/vm.sh run -- python bench/accuracy.py --shaping netem    # netem, on Debian's stock kernel
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402

from fogify_net.backends.local import LocalBackend  # noqa: E402
from fogify_net.compile.plan import compile_model  # noqa: E402
from fogify_net.host.facts import read_host_facts  # noqa: E402
from fogify_net.model import ModelBuilder  # noqa: E402

IMAGE = "fogify-net/base:latest"
GOODPUT = 1448 / 1514  # TCP payload per Ethernet frame with timestamps


def model(sender: dict, receiver: dict):
    """Two instances on one network; each side's attachment given in full."""
    m = ModelBuilder()
    m.service("app", image=IMAGE, command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=read_host_facts().cpu_mhz, memory="256M")
    m.network("net")
    m.blueprint("a", node="box", service="app", networks=[{"name": "net", **sender}])
    m.blueprint("b", node="box", service="app", networks=[{"name": "net", **receiver}])
    return m.build()


def deployed(m, shaping: str):
    emulation = LocalBackend(compile_model(m, read_host_facts()), shaping=shaping)
    emulation.deploy()
    return emulation


def iperf_mbit(emulation, seconds: int = 6) -> float:
    a, b = emulation.hosts["a.1"], emulation.hosts["b.1"]
    server = b.popen(["iperf3", "-s", "-1"])
    try:
        for _ in range(50):
            if ":5201" in b.cmd("ss -ltn"):
                break
        out = a.cmd(f"iperf3 -c {emulation.plan.instance('b.1').interface('net').ip} -t {seconds} -O 1 -J")
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        server.kill()
        server.wait()


def received(emulation, count: int, interval: float) -> int:
    out = emulation.hosts["a.1"].cmd(
        f"ping -n -q -c {count} -i {interval} -W 8 {emulation.plan.instance('b.1').interface('net').ip}")
    return int(re.search(r"(\d+) received", out).group(1))


def rtt_series(emulation, count: int, interval: float) -> list[float]:
    out = emulation.hosts["a.1"].cmd(
        f"ping -n -c {count} -i {interval} -W 8 {emulation.plan.instance('b.1').interface('net').ip}")
    return [float(v) for v in re.findall(r"time=([\d.]+) ms", out)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown")
    parser.add_argument("--shaping", choices=["auto", "netem", "userspace"], default="auto",
                        help="the shaping mechanism (default: what the machine has, netem first)")
    args = parser.parse_args()
    rows = []
    with machine_lock():
        unlimited = {"bidirectional": {"latency": {"delay": "0ms"}}}
        for mbit in (1, 10, 100):
            for direction, sender, receiver in (
                ("uplink", {"uplink": {"bandwidth": f"{mbit}Mbps"}}, unlimited),
                ("downlink", unlimited, {"downlink": {"bandwidth": f"{mbit}Mbps"}}),
            ):
                emulation = deployed(model(sender, receiver), args.shaping)
                try:
                    measured = iperf_mbit(emulation)
                finally:
                    emulation.teardown()
                rows.append([f"rate, {direction}", f"{mbit} Mbit/s", f"{measured:.3f} Mbit/s (TCP goodput)",
                             f"{100 * measured / (mbit * GOODPUT):.1f}% of rate x 1448/1514"])
        baseline = deployed(model(unlimited, unlimited), args.shaping)
        try:
            base = statistics.fmean(rtt_series(baseline, 50, 0.02))
        finally:
            baseline.teardown()
        rows.append(["delay, unshaped link", "0 ms", f"{base / 2:.3f} ms one-way (RTT/2)", "baseline"])
        for delay, count, interval in ((5, 200, 0.02), (50, 100, 0.05), (150, 50, 0.1), (3000, 10, 0.2)):
            path = {"bidirectional": {"latency": {"delay": f"{delay}ms"}}}  # host-to-host, split per direction
            emulation = deployed(model(path, path), args.shaping)
            try:
                series = rtt_series(emulation, count, interval)
            finally:
                emulation.teardown()
            one_way = statistics.fmean(series) / 2
            rows.append([f"delay ({len(series)} pings)", f"{delay} ms one-way", f"{one_way:.3f} ms",
                         f"{one_way - delay:+.3f} ms ({one_way - base / 2 - delay:+.3f} over the unshaped link)"])
        jitter = {"bidirectional": {"latency": {"delay": "50ms", "deviation": "10ms"}}}
        emulation = deployed(model(jitter, jitter), args.shaping)
        try:
            series = rtt_series(emulation, 400, 0.02)
        finally:
            emulation.teardown()
        # bidirectional: each of the 4 points a ping crosses is uniform in 25 ms +- 10/sqrt(2) ms
        expected = math.sqrt(4 * (10 / math.sqrt(2)) ** 2 / 3)
        spread = statistics.stdev(series)
        rows.append([f"jitter ({len(series)} pings)", "50 ms +- 10 ms one-way, uniform",
                     f"RTT std {spread:.2f} ms, mean {statistics.fmean(series):.2f} ms",
                     f"{100 * (spread / expected - 1):+.1f}% of the expected {expected:.2f} ms"])
        for percent in (1, 10):
            emulation = deployed(model({"uplink": {"drop": f"{percent}%"}}, unlimited), args.shaping)
            try:
                replies = received(emulation, 2000, 0.002)
            finally:
                emulation.teardown()
            lost = 100 * (2000 - replies) / 2000
            sigma = 100 * math.sqrt(percent / 100 * (1 - percent / 100) / 2000)
            rows.append(["loss (2000 pings)", f"{percent}%", f"{lost:.2f}%", f"{(lost - percent) / sigma:+.2f} sigma"])
    mechanism = deployed_mechanism(args.shaping)
    where = ""
    if os.environ.get("FOGIFY_NET_EMULATED_CPU") == "1":
        where = ", measured in a software-emulated VM (QEMU TCG, scripts/vm.sh)"
    elif os.environ.get("FOGIFY_NET_VM") == "1":
        where = ", measured in the stock-kernel VM (scripts/vm.sh, KVM)"
    emit(f"### Shaping accuracy ({mechanism} mechanism{where})\n\n"
         + markdown_table(["what", "configured", "measured", "error"], rows, "llrr") + "\n" + machine_line() + "\n",
         args.markdown)
    return 0


def deployed_mechanism(shaping: str = "auto") -> str:
    from fogify_net.host.capabilities import probe

    return probe().mechanism(shaping)


if __name__ == "__main__":
    sys.exit(main())
