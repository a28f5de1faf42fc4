"""Scale: N idle instances deploy, reach each other across every network, and undeploy cleanly.

The synthetic fog layout of bench/deploy.py (clouds on wan, edges on wan + lan,
phones on lan + iot, sensors on iot, every network shaped): for each N, deploy,
ping from the first to the last instance of every network, read the memory the
machine spent per instance, undeploy, and check that no container, link,
namespace or rule of ours is left.

    sudo /opt/fogify-net/venv/bin/python bench/scale.py [--n 500 1000] [--markdown FILE]

A Linux bridge holds at most 1,023 ports, so one network tops out there: the
largest layout this machine can hold with these shapes is about N = 1,000.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402
from deploy import containers, links, make_plan, ours, wait_quiet  # noqa: E402

from fogify_net.backends.local import LocalBackend  # noqa: E402
from fogify_net.host.capabilities import probe  # noqa: E402

RUN_DIR = "/run/fogify-net-bench"
PINGS = 5


def used_mib() -> float:
    """Memory in use on the machine (MemTotal - MemAvailable), MiB."""
    facts = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            facts[key] = int(value.split()[0])
    return (facts["MemTotal"] - facts["MemAvailable"]) / 1024


def ping_across(emulation: LocalBackend) -> list[tuple[str, str, str, int]]:
    """(network, from, to, replies) from the first to the last instance of each network."""
    results = []
    for network in sorted(emulation.plan.networks):
        members = [i for i in emulation.plan.instances if any(x.network == network for x in i.interfaces)]
        source, target = members[0], members[-1]
        out = emulation.hosts[source.name].cmd(
            f"ping -n -q -c {PINGS} -i 0.2 -W 3 {target.interface(network).ip}")
        received = next((int(part.split()[0]) for part in out.split(",") if "received" in part), 0)
        results.append((network, source.name, target.name, received))
    return results


def our_leftovers() -> list[str]:
    """What of ours is still on the machine: containers, links, namespaces, iptables rules, nft tables."""
    left = sorted(ours(links()) | ours(containers()))
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    left += [line for line in rules.splitlines() if "fogify" in line.lower() or "FOGIFY" in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    left += [line for line in tables.splitlines() if "fogify" in line]
    return left


def measure(n: int, capabilities) -> list[object]:
    plan = make_plan(n)
    emulation = LocalBackend(plan, capabilities=capabilities, run_dir=RUN_DIR)
    before = used_mib()
    began = time.perf_counter()
    try:
        emulation.deploy()
        deployed = time.perf_counter() - began
        per_instance = (used_mib() - before) / len(plan.instances)
        pings = ping_across(emulation)
    finally:
        began = time.perf_counter()
        emulation.teardown()
        undeployed = time.perf_counter() - began
    wait_quiet()
    left = our_leftovers()
    reached = " ".join(f"{network} {received}/{PINGS}" for network, _, _, received in pings)
    ok = all(received > 0 for *_, received in pings) and not left
    if left:
        print(f"N={n}: LEFT BEHIND {left}", file=sys.stderr)
    return [len(plan.instances), f"{deployed:.1f}", f"{per_instance:.1f}", reached, f"{undeployed:.1f}",
            "none" if not left else len(left), "ok" if ok else "FAILED"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500])
    parser.add_argument("--markdown", metavar="FILE", help="also append the table to FILE")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (containers, namespaces, links)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with machine_lock():
        capabilities = probe()
        rows = [measure(n, capabilities) for n in args.n]
    text = ("\n### Scale: idle instances deployed, pinged across every network, undeployed\n\n"
            f"Ping: {PINGS} packets from the first to the last instance of each network (the networks drop "
            "0.1-1% by design).\n\n")
    text += markdown_table(["instances", "deploy s", "MiB per instance", "ping replies", "undeploy s",
                            "left behind", "result"], rows, "rrrlrll")
    text += f"\n{machine_line()}\n"
    emit(text, args.markdown)
    return 0 if all(row[-1] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
