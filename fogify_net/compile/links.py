"""ip commands that build the switches and the links of a plan.

Root-namespace work is one `ip -batch` (bridges, veth pairs, ports, the
cables between switches); each container gets one more batch for its own ends
(addresses, routes, up). The container end is created directly inside the
container's namespace (`peer ... netns <pid>`), so it never appears in the
root namespace.
"""

from __future__ import annotations

from .naming import ALIAS
from .plan import InstancePlan, InterfacePlan, Plan, SwitchLinkPlan


def switch_bridges(plan: Plan) -> dict[str, str]:
    """Every switch's bridge, by switch name."""
    return {switch: bridge for network in plan.networks.values() for switch, bridge in network.switches.items()}


def bridge_commands(bridge: str, network: str) -> list[str]:
    """A bridge that forwards at once: no STP, no forwarding delay, no multicast snooping."""
    return [
        f"link add name {bridge} type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
        f"link set {bridge} alias {ALIAS}:{network}",
        f"link set {bridge} up",
    ]


def veth_commands(instance: InstancePlan, pid: int | str, bridges: dict[str, str],
                  interfaces: list[InterfacePlan] | None = None, master: bool = True) -> list[str]:
    """Root-namespace side: one veth pair per interface (all, or `interfaces`), the switch end attached
    to its switch's Linux bridge (`master`; an Open vSwitch bridge takes its ports through ovs-vsctl)."""
    lines = []
    for interface in instance.interfaces if interfaces is None else interfaces:
        lines += [
            f"link add name {interface.port} type veth peer name {interface.name} netns {pid}",
            f"link set {interface.port} alias {ALIAS}:{instance.name}:{interface.network}",
            *([f"link set {interface.port} master {bridges[interface.switch]}"] if master else []),
            f"link set {interface.port} {'up' if interface.up else 'down'}",
        ]
    return lines


def switch_link_commands(link: SwitchLinkPlan, bridges: dict[str, str], master: bool = True) -> list[str]:
    """A cable between two switches: a veth pair, one end a port of each bridge (with `master`;
    Open vSwitch takes its ports in its own database instead, as an instance's)."""
    lines = [f"link add name {link.source_port} type veth peer name {link.target_port}"]
    for port, switch in ((link.source_port, link.source), (link.target_port, link.target)):
        lines.append(f"link set {port} alias {ALIAS}:{link.network}:{link.name}")
        if master:
            lines.append(f"link set {port} master {bridges[switch]}")
        lines.append(f"link set {port} {'up' if link.up else 'down'}")
    return lines


def container_commands(instance: InstancePlan, interfaces: list[InterfacePlan] | None = None) -> list[str]:
    """Inside the container's namespace: MACs, addresses, links up, then the static routes; of all
    interfaces, or only `interfaces` (an interface a move adds: lo and the routes are there already)."""
    lines = ["link set lo up"] if interfaces is None else []
    for interface in instance.interfaces if interfaces is None else interfaces:
        lines.append(f"link set {interface.name} address {interface.mac}")
        if interface.cidr is not None:
            lines.append(f"addr add {interface.cidr} dev {interface.name}")
        lines.append(f"link set {interface.name} up")
    if interfaces is None:
        for route in instance.routes:
            lines.append(f"route replace {route.describe()}")
    return lines
