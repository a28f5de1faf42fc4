"""ip commands that build the switches and the links of a plan.

Root-namespace work is one `ip -batch` (bridges, veth pairs, ports); each
container gets one more batch for its own ends (addresses, up). The container
end is created directly inside the container's namespace (`peer ... netns
<pid>`), so it never appears in the root namespace.
"""

from __future__ import annotations

from .naming import ALIAS
from .plan import InstancePlan


def bridge_commands(bridge: str, network: str) -> list[str]:
    """A bridge that forwards at once: no STP, no forwarding delay, no multicast snooping."""
    return [
        f"link add name {bridge} type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
        f"link set {bridge} alias {ALIAS}:{network}",
        f"link set {bridge} up",
    ]


def veth_commands(instance: InstancePlan, pid: int | str, bridges: dict[str, str], master: bool = True) -> list[str]:
    """Root-namespace side: one veth pair per interface, the switch end attached to its Linux bridge
    (`master`; an Open vSwitch bridge takes its ports through ovs-vsctl instead)."""
    lines = []
    for interface in instance.interfaces:
        lines += [
            f"link add name {interface.port} type veth peer name {interface.name} netns {pid}",
            f"link set {interface.port} alias {ALIAS}:{instance.name}:{interface.network}",
            *([f"link set {interface.port} master {bridges[interface.network]}"] if master else []),
            f"link set {interface.port} {'up' if interface.up else 'down'}",
        ]
    return lines


def container_commands(instance: InstancePlan) -> list[str]:
    """Inside the container's namespace: MACs, addresses and links up."""
    lines = ["link set lo up"]
    for interface in instance.interfaces:
        lines += [f"link set {interface.name} address {interface.mac}",
                  f"addr add {interface.cidr} dev {interface.name}", f"link set {interface.name} up"]
    return lines
