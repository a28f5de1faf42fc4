"""Paths through a plan, hop by hop, and what they add up to: delay and jitter sum, rates take the minimum.

A packet from one instance to an address leaves by the interface whose subnet
holds the address, or by the longest matching static route (to its gateway);
inside a network it crosses the switch links between the two switches, then
enters the next instance, which either owns the address or forwards it (a
router) and the walk goes on. Every crossing is one Hop with the shaping that
applies to this packet: an uplink, a switch link's direction, a downlink.
Per-peer `links` rules match the packet's own source and destination, as the
tc filters do, so routed traffic gets a network's default shaping.

This is what `fogify-net deploy --dry-run` shows and what the multi-hop tests
compare their measurements with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from ..model.schema import QoS
from .plan import InstancePlan, InterfacePlan, Plan
from .shaping import interface_shaping

MAX_HOPS = 64


@dataclass(frozen=True)
class Hop:
    what: str  # e.g. "d1 up (lan)", "s1->s2", "d2 down (lan)"
    qos: QoS


@dataclass(frozen=True)
class Path:
    source: str
    target: str
    address: IPv4Address
    hops: tuple[Hop, ...]
    error: str | None = None  # why the packet does not arrive (no route, a link down, a host that does not forward)

    @property
    def delay(self) -> float:
        """Seconds, one way: the sum of the hops' delays."""
        return sum(hop.qos.delay for hop in self.hops)

    @property
    def jitter(self) -> float:
        """Seconds: independent hops' deviations add as variances."""
        return math.sqrt(sum(hop.qos.jitter ** 2 for hop in self.hops))

    @property
    def rate(self) -> int | None:
        """Bits/s: the narrowest hop; None when no hop is limited."""
        rates = [hop.qos.rate for hop in self.hops if hop.qos.rate]
        return min(rates) if rates else None

    @property
    def loss(self) -> float:
        """Percent: a packet arrives only if every hop keeps it."""
        kept = 1.0
        for hop in self.hops:
            kept *= 1 - hop.qos.loss / 100
        return 100 * (1 - kept)

    @property
    def routers(self) -> list[str]:
        """The instances the packet is forwarded by."""
        return [hop.what.split()[0] for hop in self.hops if hop.what.endswith("(forwards)")]


def _owner(plan: Plan, network: str, address: IPv4Address) -> tuple[InstancePlan, InterfacePlan] | None:
    for instance in plan.instances:
        interface = instance.interface(network)
        if interface is not None and interface.ip == address:
            return instance, interface
    return None


def _egress(plan: Plan, instance: InstancePlan, destination: IPv4Address) -> tuple[InterfacePlan, IPv4Address] | str:
    """The interface a packet to `destination` leaves by and the address it is sent to (the next hop)."""
    for interface in instance.interfaces:
        if interface.ip is not None and destination in plan.networks[interface.network].subnet:
            return interface, destination
    best = None
    for route in instance.routes:
        prefix = route.destination or IPv4Network("0.0.0.0/0")
        if destination in prefix and (best is None or prefix.prefixlen > best[0].prefixlen):
            best = (prefix, route)
    if best is None:
        return f"{instance.name} has no route to {destination}"
    route = best[1]
    if route.device is not None:
        interface = next((i for i in instance.interfaces if i.name == route.device), None)
        if interface is None:
            return f"{instance.name}'s route {route.describe()} names no interface of it"
        return interface, route.via or destination
    for interface in instance.interfaces:
        if interface.ip is not None and route.via in plan.networks[interface.network].subnet:
            return interface, route.via
    return f"{instance.name}'s gateway {route.via} is on none of its networks"


def _switch_path(plan: Plan, network: str, start: str, end: str) -> list[tuple[str, str]] | None:
    """The switches' cables from `start` to `end`, each as (from, to); the links form a tree."""
    links = plan.networks[network].switch_links
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        here = queue.pop(0)
        for link in links:
            if here in (link.source, link.target):
                there = link.target if here == link.source else link.source
                if there not in previous:
                    previous[there] = here
                    queue.append(there)
    if end not in previous:
        return None
    steps, node = [], end
    while previous[node] is not None:
        steps.append((previous[node], node))
        node = previous[node]
    return steps[::-1]


def trace(plan: Plan, source: InstancePlan, address: IPv4Address) -> Path:
    """The path a packet from `source` to `address` takes, with the shaping of every hop."""
    hops: list[Hop] = []
    target = next((i.name for i in plan.instances for x in i.interfaces if x.ip == address), str(address))
    origin: IPv4Address | None = None  # the packet's source address: that of the interface it leaves by
    here = source

    def stop(why: str) -> Path:
        return Path(source.name, target, address, tuple(hops), why)

    for _ in range(MAX_HOPS):
        way = _egress(plan, here, address)
        if isinstance(way, str):
            return stop(way)
        out, next_hop = way
        if here is source:
            origin = out.ip
        if not out.up:
            return stop(f"{here.name}'s link on {out.network} is down")
        found = _owner(plan, out.network, next_hop)
        if found is None:
            return stop(f"no instance has {next_hop} on network {out.network}")
        there, into = found
        mine = interface_shaping(plan, here, out)
        hops.append(Hop(f"{here.name} up ({out.network})", mine.uplink.toward(address)))
        steps = _switch_path(plan, out.network, out.switch, into.switch)
        if steps is None:
            return stop(f"switches {out.switch} and {into.switch} of {out.network} are not linked")
        for a, b in steps:
            link = plan.switch_link(a, b)
            if not link.up:
                return stop(f"switch link {link.name} is down")
            hops.append(Hop(f"{a}->{b}", link.forward if link.source == a else link.backward))
        if not into.up:
            return stop(f"{there.name}'s link on {into.network} is down")
        theirs = interface_shaping(plan, there, into)
        sender = origin if origin is not None else next_hop
        hops.append(Hop(f"{there.name} down ({into.network})", theirs.downlink.toward(sender)))
        if into.ip == address or any(x.ip == address for x in there.interfaces):
            return Path(source.name, target, address, tuple(hops))
        if not there.forwarding:
            return stop(f"{there.name} does not forward (it is not a router)")
        hops.append(Hop(f"{there.name} (forwards)", QoS()))
        here = there
    return stop(f"more than {MAX_HOPS} hops: a routing loop")


def reachable_address(plan: Plan, source: InstancePlan, target: InstancePlan) -> IPv4Address | None:
    """The target's address a peer would use: one on a network the two share, else its first."""
    mine = {i.network for i in source.interfaces}
    numbered = [i for i in target.interfaces if i.ip is not None]
    shared = [i for i in numbered if i.network in mine]
    chosen = (shared or numbered or [None])[0]
    return None if chosen is None else chosen.ip


def end_to_end(plan: Plan, limit: int = 60) -> tuple[list[tuple[Path, Path | None]], int]:
    """Paths (there and back) between the first instances of every two labels that are not routers.

    Returns at most `limit` pairs and how many there were in all.
    """
    ends = [plan.instances_of(b.label)[0] for b in plan.model.blueprints
            if plan.instances_of(b.label) and not b.forwarding]
    pairs = []
    for a in ends:
        for b in ends:
            address = reachable_address(plan, a, b) if a is not b else None
            back = reachable_address(plan, b, a) if a is not b else None
            if address is not None:
                pairs.append((trace(plan, a, address), trace(plan, b, back) if back is not None else None))
    return pairs[:limit], len(pairs)
