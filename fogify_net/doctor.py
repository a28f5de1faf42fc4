"""`fogify-net doctor`: what this machine can emulate, and what follows for the user."""

from __future__ import annotations

from .host.capabilities import probe
from .host.facts import read_host_facts
from .render import MECHANISMS


def diagnose(shaping: str = "auto") -> str:
    caps = probe()
    host = read_host_facts()

    def yes(flag) -> str:
        return "yes" if flag else "no"

    rows = [
        ("root", yes(caps.root), "" if caps.root else "run as root: namespaces, links and rules need it"),
        ("docker daemon", yes(caps.docker), "" if caps.docker else "start dockerd (scripts/install.sh does)"),
        ("mininet (Debian package)", yes(caps.mininet),
         "" if caps.mininet else "apt install mininet; use a venv from /usr/bin/python3"),
        ("tc htb", yes(caps.htb), "rates are shaped in the kernel" if caps.htb else "no rate shaping possible"),
        ("tc netem", yes(caps.netem), "delay, jitter and loss in the kernel" if caps.netem
         else "no sch_netem: delay and loss take the user-space path"),
        ("nftables on bridges", yes(caps.nft_bridge), "loss on the receive path, partitions, firewall rules"),
        ("iptables NFQUEUE", yes(caps.nfqueue), "feeds the user-space delay line"),
        ("iptables physdev", yes(caps.physdev), "matches bridge ports"),
        ("bridge netfilter", yes(caps.br_netfilter), "bridged packets meet iptables and nftables"),
        ("fogify-delayd", caps.delayd or "not built", "" if caps.delayd else "run scripts/install.sh"),
        ("openvswitch module", yes(caps.ovs_kernel), "--switch ovs possible with netem shaping (see README)"
         if caps.ovs_kernel else "switches are Linux bridges"),
        ("cgroups", caps.cgroup, "CPU quota and memory limits per instance"),
        ("host clock", f"{host.cpu_mhz:g} MHz", "CPU limit = cores x clock_speed / this (FOGIFY_HOST_MHZ overrides)"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"  {name.ljust(width, '.')} {value}" + (f"  ({note})" if note else "") for name, value, note in rows]
    try:
        mechanism = caps.mechanism(shaping)
        lines.append(f"shaping: {MECHANISMS[mechanism]}")
    except ValueError as error:
        lines.append(f"shaping: cannot use {shaping!r}: {error}")
    if not caps.userspace_shaping and not caps.netem:
        lines += [f"  missing for user-space shaping: {m}" for m in caps.userspace_missing()]
    return "\n".join(lines)
