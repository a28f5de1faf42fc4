"""Packet-level monitoring: which traffic is counted per flow, and the nftables table that counts it.

Fogify sniffed every packet with pyshark inside each container. Here the bridges
count instead: one dynamic nftables set whose elements are flows (source,
destination, protocol, ports), each with a packet and a byte counter that the
kernel updates for every frame a bridge forwards from a monitored network's
subnet (with Open vSwitch, for every such frame entering the switch from an
instance's port: its datapath bypasses bridge netfilter). Nothing crosses to user space per packet; a reader lists the
set once a period and stores what changed (fogify_net.monitoring.flows).

Sizes are IP bytes. A TCP sender's segmentation-offload batch crosses the
bridge as one frame, so `count` is frames forwarded, not wire packets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from .plan import InterfacePlan, Plan

FLOW_TABLE = "fogify_net_flows"
FLOW_SET = "flows"
FLOW_TIMEOUT_S = 3600  # a flow idle this long leaves the set; its counts were stored long before
FLOW_SET_SIZE = 65536
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass(frozen=True)
class Flow:
    src: IPv4Address
    dst: IPv4Address
    protocol: str  # tcp, udp, icmp
    sport: int
    dport: int


def monitored(plan: Plan) -> dict[str, set[str]]:
    """Network -> the labels whose traffic on it is counted.

    A blueprint's inline override may switch monitoring on for its label; it
    never switches off what the network itself asks for (Fogify lost the
    network's setting unless the override repeated it).
    """
    model = plan.model
    result: dict[str, set[str]] = {}
    for blueprint in model.blueprints:
        for attachment in blueprint.networks:
            network = model.networks[attachment.network]
            override = attachment.override
            if network.packet_level_monitoring or (override is not None and override.packet_level_monitoring):
                result.setdefault(attachment.network, set()).add(blueprint.label)
    return result


def flow_ruleset(plan: Plan, ports: str = "fgnh*") -> str | None:
    """The `bridge fogify_net_flows` table, or None when no network is monitored.

    It lives apart from the shaping table, which is replaced whole on every
    change and would lose the counters. `ports` matches the bridge ports that
    instances send through (ours locally; Docker's `veth*` on a Swarm overlay's
    bridge, where frames from other nodes enter by `vxlan0` and are counted on
    their sender's node): each flow is counted once, where it enters.
    """
    networks = monitored(plan)
    if not networks:
        return None
    return flow_ruleset_for([plan.networks[name].subnet for name in sorted(networks)], ports)


def flow_ruleset_for(subnets: list[IPv4Network], ports: str) -> str:
    """`flow_ruleset` from the monitored subnets alone (what a Swarm agent is sent: it renders the rules)."""
    _check_subnets(subnets)
    if not re.fullmatch(r"[A-Za-z0-9_*-]{1,15}", ports):
        raise ValueError("bad port pattern")
    return "\n".join([
        f"table bridge {FLOW_TABLE}",
        f"delete table bridge {FLOW_TABLE}",
        f"table bridge {FLOW_TABLE} {{",
        *_flow_set(),
        "  chain count {",
        "    type filter hook forward priority -20; policy accept;",
        *(f"    {rule}" for rule in _count_rules(subnets, f'iifname "{ports}" ')),
        "  }",
        "}",
    ]) + "\n"


def flow_port_table(plan: Plan) -> str | None:
    """With Open vSwitch: the `netdev fogify_net_flows` table and its set, no chains yet (None when no
    network is monitored). OVS's datapath bypasses bridge netfilter, so flows are counted where frames
    enter the switch, on the instances' ports' ingress (`flow_port_chains`, once the ports exist)."""
    if not monitored(plan):
        return None
    return "\n".join([f"table netdev {FLOW_TABLE}", f"delete table netdev {FLOW_TABLE}",
                      f"table netdev {FLOW_TABLE} {{", *_flow_set(), "}"]) + "\n"


def flow_port_chains(plan: Plan, interfaces: Iterable[InterfacePlan]) -> str:
    """A counting chain on the ingress of each of these instance ports that is on a monitored network
    ("" when none is): each flow counted once, where it enters the switch from its sender, as on a bridge.

    One chain per port: a port's hook goes when its veth does (a restarted or removed instance), and
    the kernel then deletes a single-device chain with it. So each call declares its ports' chains
    afresh (idempotent: an existing chain is kept, its rules flushed and written again); the set, and
    the counts in it, stay.
    """
    networks = monitored(plan)
    subnets = [plan.networks[name].subnet for name in sorted(networks)]
    _check_subnets(subnets)
    lines = []
    for interface in sorted({i.port: i for i in interfaces if i.network in networks}.values(),
                            key=lambda i: i.port):
        chain = f"count_{interface.port}"
        lines += [f'add chain netdev {FLOW_TABLE} {chain} {{ type filter hook ingress device "{interface.port}" '
                  "priority -20; policy accept; }",
                  f"flush chain netdev {FLOW_TABLE} {chain}"]
        lines += [f"add rule netdev {FLOW_TABLE} {chain} {rule}" for rule in _count_rules(subnets, "")]
    return "\n".join(lines) + "\n" if lines else ""


def _check_subnets(subnets: list[IPv4Network]) -> None:
    if not subnets or not all(isinstance(s, IPv4Network) for s in subnets):
        raise ValueError("flow counting needs IPv4 subnets")


def _flow_set() -> list[str]:
    return [f"  set {FLOW_SET} {{",
            "    type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service",
            "    flags dynamic, timeout",
            f"    timeout {FLOW_TIMEOUT_S}s",
            f"    size {FLOW_SET_SIZE}",
            "  }"]


def _count_rules(subnets: list[IPv4Network], port_match: str) -> list[str]:
    """Each IPv4 frame from a monitored subnet adds to its flow's counter (ICMP: ports 0)."""
    match = f'{port_match}ip saddr {{ {", ".join(str(s) for s in subnets)} }}'
    key = "ip saddr . ip daddr . ip protocol"
    return [f"{match} ip protocol {{ tcp, udp }} update @{FLOW_SET} {{ {key} . th sport . th dport counter }}",
            f"{match} ip protocol icmp update @{FLOW_SET} {{ {key} . 0 . 0 counter }}"]


def flow_teardown() -> str:
    """Both families' flow tables (bridge: Linux bridges; netdev: Open vSwitch ports), gone or not there."""
    return "".join(f"table {family} {FLOW_TABLE}\ndelete table {family} {FLOW_TABLE}\n"
                   for family in ("bridge", "netdev"))


def parse_flow_set(text: str) -> dict[Flow, tuple[int, int]]:
    """`nft -j list set bridge fogify_net_flows flows` -> {flow: (packets, bytes)}."""
    flows: dict[Flow, tuple[int, int]] = {}
    for item in json.loads(text).get("nftables", []):
        for element in item.get("set", {}).get("elem", []):
            elem = element.get("elem", element)
            src, dst, protocol, sport, dport = elem["val"]["concat"]
            counter = elem.get("counter", {})
            flows[Flow(IPv4Address(src), IPv4Address(dst), str(protocol), int(sport), int(dport))] = (
                int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return flows


def flows_to_json(flows: dict[Flow, tuple[int, int]]) -> list[list]:
    """Counters on the wire (agent -> controller): [src, dst, protocol, sport, dport, packets, bytes]."""
    return [[str(f.src), str(f.dst), f.protocol, f.sport, f.dport, packets, size]
            for f, (packets, size) in flows.items()]


def flows_from_json(rows: list[list]) -> dict[Flow, tuple[int, int]]:
    return {Flow(IPv4Address(src), IPv4Address(dst), protocol, int(sport), int(dport)): (int(packets), int(size))
            for src, dst, protocol, sport, dport, packets, size in rows}


def sum_counters(parts: Iterable[dict[Flow, tuple[int, int]]]) -> dict[Flow, tuple[int, int]]:
    """Counters of several bridges as one: packets and bytes added per flow."""
    total: dict[Flow, tuple[int, int]] = {}
    for counters in parts:
        for flow, (packets, size) in counters.items():
            before = total.get(flow, (0, 0))
            total[flow] = (before[0] + packets, before[1] + size)
    return total
