"""What an agent installs in one task's network namespace, as commands: rate (HTB, an IFB for
the downlink), loss and filters (nftables on the receive path); and its interface counters.

Pure functions of the wanted and the installed shaping, so they are tested
without a node: a change is a difference (`tc class replace` of the live
class, no burst of unshaped traffic).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from ....compile.netfilter import has_loss, loss_chain, loss_rule
from ....compile.shaping import DirectionShaping
from ....compile.tc import direction_commands
from ....model.schema import QoS

IFB = "fgnifb{}"  # the IFB of a task's interface ethN is fgnifbN, inside the task's namespace


def net_dev(pid: int) -> dict[str, tuple[float, float]]:
    """{device: (rx bytes, tx bytes)} in the network namespace of `pid` (/proc/<pid>/net/dev is per netns)."""
    counters = {}
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f.readlines()[2:]:
            name, _, values = line.partition(":")
            fields = values.split()
            counters[name.strip()] = (float(fields[0]), float(fields[8]))
    return counters


@dataclass
class Installed:
    device: str
    ifb: str
    uplink: DirectionShaping | None = None
    downlink: DirectionShaping | None = None
    network_id: str | None = None  # the overlay network, and the task's port on its bridge (for delay)
    port: str | None = None


def loss_ruleset(downlinks: dict[str, DirectionShaping], filters: list[str] | tuple[str, ...] = (),
                 senders: dict[str, list[tuple[str, float]]] | None = None) -> str:
    """nft text for a task's namespace: on each device's receive path, the senders' uplink loss
    ({device: [(sender address, %)]}, each sender's toward this task), drawn apart from the
    device's downlink loss ({device: its downlink}, per peer as the local backend draws it);
    then the plan's partitions and firewall rules (`ip saddr {..} ip daddr {..} drop`, as on the
    local backend's bridges: every packet to a task passes its receive path, so there they hold).

    IP prerouting, not a netdev ingress hook: with the IFB redirect the ingress
    hook never sees the packets. Prerouting is still the receive path, so the
    sender is not told (a drop on its own output would return EPERM to it).
    """
    chains, rules = "", ""
    for device, pairs in sorted((senders or {}).items()):
        by_loss: dict[float, list[str]] = {}
        for address, loss in pairs:
            by_loss.setdefault(loss, []).append(address)
        for loss, addresses in sorted(by_loss.items()):
            if rule := loss_rule(QoS(loss=loss), f'iifname "{device}" ip saddr {{ {", ".join(sorted(addresses))} }} '):
                rules += f"    {rule}\n"
    for device, downlink in sorted(downlinks.items()):
        if has_loss(downlink):
            chains += f"  chain down_{device} {{\n" + "".join(f"    {r}\n" for r in loss_chain(downlink, "saddr"))
            chains += "  }\n"
            rules += f'    iifname "{device}" jump down_{device}\n'
    rules += "".join(f"    {rule}\n" for rule in filters)
    return ("table inet fogify_net\ndelete table inet fogify_net\n"
            f"table inet fogify_net {{\n{chains}  chain rx {{\n    type filter hook prerouting priority -300;\n"
            f"{rules}  }}\n}}\n")


def shaping_commands(installed: Installed, subnet: IPv4Network, uplink: DirectionShaping,
                     downlink: DirectionShaping) -> tuple[list[str], list[str]]:
    """(ip lines, tc lines) taking one attachment from what is installed to the wanted shaping.

    Uplink: HTB on the task's own interface (its egress). Downlink: HTB on an
    IFB that the interface's ingress is redirected to (u32 `match u32 0 0`:
    this kernel has no matchall). Delay goes on the network's bridge (delay.py).
    """
    ip_lines: list[str] = []
    tc_lines = direction_commands(installed.device, installed.uplink, uplink, subnet, "dst", kernel_delay=False)
    if installed.downlink is None:
        ip_lines = [f"link add {installed.ifb} type ifb", f"link set {installed.ifb} up"]
        tc_lines += [
            f"qdisc replace dev {installed.device} handle ffff: ingress",
            f"filter replace dev {installed.device} parent ffff: protocol all prio 1 handle 800::800 "
            f"u32 match u32 0 0 action mirred egress redirect dev {installed.ifb}",
        ]
    tc_lines += direction_commands(installed.ifb, installed.downlink, downlink, subnet, "src", kernel_delay=False)
    return ip_lines, tc_lines
