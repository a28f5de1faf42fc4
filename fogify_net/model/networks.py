"""Networks as the model writes them: per-direction characteristics, per-pair links, firewall rules.

Shared by the model's networks, a blueprint's inline overrides and the
runtime actions (network, links), so a direction is read the same way wherever
it is written.
"""

from __future__ import annotations

from ipaddress import IPv4Network, ip_network
from typing import Any

from .distributions import lookup
from .errors import ModelError, join, shown
from .fields import boolean, known_keys, mapping, sequence, unique, valid_name
from .schema import FirewallRule, LinkRule, Network, QoS, QoSPatch, SwitchLink
from .traces import TraceFiles, parse_traces
from .units import parse_count, parse_delay, parse_percent, parse_rate


def parse_qos_patch(raw: Any, path: str) -> QoSPatch:
    """One direction as written in a model or an action: bandwidth, latency{...}, drop, queue (packets)."""
    raw = mapping(raw, path, "network characteristics")
    known_keys(raw, path, {"bandwidth", "latency", "drop", "loss", "queue"})
    values: dict[str, Any] = {}
    if raw.get("queue") is not None:
        values["queue"] = parse_count(raw["queue"], join(path, "queue"), minimum=1)
    if raw.get("bandwidth") is not None:
        values["rate"] = parse_rate(raw["bandwidth"], join(path, "bandwidth"))
    for key in ("drop", "loss"):
        if raw.get(key) is not None:
            values["loss"] = parse_percent(raw[key], join(path, key))
    if raw.get("latency") is not None:
        lat_path = join(path, "latency")
        latency = mapping(raw["latency"], lat_path, "latency")
        known_keys(latency, lat_path, {"delay", "deviation", "jitter", "correlation", "distribution"})
        if latency.get("delay") is not None:
            values["delay"] = parse_delay(latency["delay"], join(lat_path, "delay"))
        for key in ("deviation", "jitter"):
            if latency.get(key) is not None:
                values["jitter"] = parse_delay(latency[key], join(lat_path, key))
        if latency.get("correlation") is not None:
            values["correlation"] = parse_percent(latency["correlation"], join(lat_path, "correlation"))
        if latency.get("distribution") is not None:
            values["distribution"], custom = lookup(latency["distribution"], join(lat_path, "distribution"))
            if custom is not None:  # a trace's distribution: its own mean and deviation unless given
                values.setdefault("delay", custom.mean_ms / 1000)
                values.setdefault("jitter", custom.std_ms / 1000)
        if values.get("correlation") and not values.get("jitter"):
            raise ModelError(join(lat_path, "correlation"), "a correlation needs a deviation (jitter) to correlate")
    return QoSPatch(**values)


def directions(raw: dict, path: str, required: bool = False) -> tuple[QoSPatch | None, QoSPatch | None]:
    """Uplink and downlink patches from uplink/downlink/bidirectional keys.

    `bidirectional` describes the host-to-host path and fills each direction
    that is not given explicitly, split per direction (see QoSPatch).
    """
    up = parse_qos_patch(raw["uplink"], join(path, "uplink")) if raw.get("uplink") is not None else None
    down = parse_qos_patch(raw["downlink"], join(path, "downlink")) if raw.get("downlink") is not None else None
    if raw.get("bidirectional") is not None:
        both = parse_qos_patch(raw["bidirectional"], join(path, "bidirectional")).split_per_direction()
        up = up if up else both
        down = down if down else both
    if required and up is None and down is None:
        raise ModelError(path, "give uplink and/or downlink, or bidirectional")
    return up, down


def parse_network(raw: Any, path: str, files: TraceFiles | None = None) -> Network:
    """A network; `files` is where its traces' files are read (none: a trace may only give points inline)."""
    raw = mapping(raw, path, "a network")
    known_keys(
        raw,
        path,
        {"name", "uplink", "downlink", "bidirectional", "links", "capacity", "subnet",
         "firewall_rules", "packet_level_monitoring", "trace", "switches", "switch_links"},
    )
    name = valid_name(raw.get("name"), join(path, "name"))
    up, down = directions(raw, path)
    capacity = None
    if raw.get("capacity") is not None:
        capacity = parse_count(raw["capacity"], join(path, "capacity"), minimum=1)
    subnet = None
    if raw.get("subnet") is not None:
        subnet = parse_subnet(raw["subnet"], join(path, "subnet"))
    links_path = join(path, "links")
    rules_path = join(path, "firewall_rules")
    return Network(
        name=name,
        uplink=QoS().patched(up),
        downlink=QoS().patched(down),
        links=tuple(parse_link(item, join(links_path, i), files, network=name)
                    for i, item in enumerate(sequence(raw.get("links"), links_path))),
        capacity=capacity,
        subnet=subnet,
        firewall_rules=tuple(
            parse_firewall_rule(item, join(rules_path, i))
            for i, item in enumerate(sequence(raw.get("firewall_rules"), rules_path))
        ),
        packet_level_monitoring=boolean(raw.get("packet_level_monitoring", False),
                                        join(path, "packet_level_monitoring")),
        traces=parse_traces(raw.get("trace"), join(path, "trace"), name, files),
        **_switches(raw, path, name, files),
    )


# --- switches: a network of several switches joined by shaped cables ------------------------------


def _switches(raw: dict, path: str, network: str, files: TraceFiles | None) -> dict[str, Any]:
    """`switches` (names) and `switch_links` (cables between them, a tree), as Network fields.

    Linux bridges run without spanning tree here, so a loop of cables would
    circulate broadcasts for ever: loops are refused, and every switch must be
    reachable from the others (a network is one layer-2 segment).
    """
    if raw.get("switches") is None and raw.get("switch_links") is None:
        return {}
    switches_path = join(path, "switches")
    names = [valid_name(item, join(switches_path, i))
             for i, item in enumerate(sequence(raw.get("switches"), switches_path))]
    if not names:
        raise ModelError(switches_path, "give the names of the network's switches (switch_links join them)")
    unique(names, switches_path, "switch")
    links_path = join(path, "switch_links")
    links = tuple(parse_switch_link(item, join(links_path, i), names, network, files)
                  for i, item in enumerate(sequence(raw.get("switch_links"), links_path)))
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for i, link in enumerate(links):
        a, b = root(link.source), root(link.target)
        if a == b:
            raise ModelError(join(links_path, i), f"{link.source}-{link.target} closes a loop of switches "
                             "(bridges run without spanning tree here; keep the switch links a tree)")
        parent[a] = b
    apart = [name for name in names if root(name) != root(names[0])]
    if apart:
        raise ModelError(links_path, f"switch {shown(apart[0])} is not linked to {shown(names[0])}: a network is one "
                         "segment; join its switches with switch_links, or make it a network of its own")
    return {"switches": tuple(names), "switch_links": links}


def parse_switch_link(raw: Any, path: str, switches: list[str], network: str,
                      files: TraceFiles | None) -> SwitchLink:
    """A cable: from, to, and `symmetric` (each direction gets these values whole, as a Mininet TCLink),
    `forward` (from -> to) and/or `backward` (to -> from); and a `trace`, whose uplink values drive
    forward and downlink values backward (its default name: from-to@network)."""
    raw = mapping(raw, path, "a switch link")
    known_keys(raw, path, {"from", "to", "symmetric", "forward", "backward", "trace"})
    ends = []
    for key in ("from", "to"):
        if raw.get(key) is None:
            raise ModelError(join(path, key), "missing (a switch of this network)")
        if raw[key] not in switches:
            raise ModelError(join(path, key),
                             f"unknown switch {shown(raw[key])} (this network's: {', '.join(switches)})")
        ends.append(raw[key])
    if ends[0] == ends[1]:
        raise ModelError(join(path, "to"), "a switch link joins two different switches")
    both = parse_qos_patch(raw["symmetric"], join(path, "symmetric")) if raw.get("symmetric") is not None else None
    directions = {}
    for key in ("forward", "backward"):
        qos = QoS().patched(both)
        if raw.get(key) is not None:
            qos = qos.patched(parse_qos_patch(raw[key], join(path, key)))
        directions[key] = qos
    traces = parse_traces(raw.get("trace"), join(path, "trace"), f"{ends[0]}-{ends[1]}@{network}", files)
    return SwitchLink(ends[0], ends[1], **directions, traces=traces)


def parse_subnet(value: Any, path: str) -> IPv4Network:
    try:
        subnet = ip_network(str(value), strict=True)
    except ValueError as error:
        raise ModelError(path, f"invalid subnet {shown(value)}: {shown(str(error))}") from None
    if subnet.version != 4:
        raise ModelError(path, "only IPv4 subnets are supported")
    if subnet.prefixlen > 30:
        raise ModelError(path, f"subnet {subnet} is too small (at most /30)")
    return subnet


def parse_link(raw: Any, path: str, files: TraceFiles | None = None, network: str | None = None) -> LinkRule:
    """A per-pair link as Fogify writes it: properties (split per direction) or uplink + downlink.

    In a model it may carry a `trace` (see traces.py); in an action it may not.
    """
    raw = mapping(raw, path, "a link")
    known_keys(raw, path, {"from_node", "to_node", "bidirectional", "properties", "uplink", "downlink", "parameters",
                           "trace"})
    if raw.get("trace") is not None and network is None:
        raise ModelError(join(path, "trace"), "a links action cannot carry a trace (use the trace action)")
    if isinstance(raw.get("parameters"), dict):  # the SDK's update_links shape
        raw = {**{k: v for k, v in raw.items() if k != "parameters"}, **raw["parameters"]}
    for key in ("from_node", "to_node"):
        if raw.get(key) is None:
            raise ModelError(join(path, key), "missing (a blueprint label)")
    if raw.get("properties") is not None:
        both = parse_qos_patch(raw["properties"], join(path, "properties")).split_per_direction()
        up = down = both
    elif raw.get("uplink") is not None and raw.get("downlink") is not None:
        up = parse_qos_patch(raw["uplink"], join(path, "uplink"))
        down = parse_qos_patch(raw["downlink"], join(path, "downlink"))
    elif raw.get("trace") is not None:  # a trace alone gives the link its properties
        up = down = QoSPatch()
    else:
        raise ModelError(path, "a link needs 'properties', or both 'uplink' and 'downlink' (or a trace)")
    source = valid_name(raw["from_node"], join(path, "from_node"))
    target = valid_name(raw["to_node"], join(path, "to_node"))
    return LinkRule(
        source=source,
        target=target,
        uplink=up,
        downlink=down,
        bidirectional=boolean(raw.get("bidirectional", False), join(path, "bidirectional")),
        traces=parse_traces(raw.get("trace"), join(path, "trace"), f"{source}-{target}@{network}", files),
    )



def parse_firewall_rule(raw: Any, path: str) -> FirewallRule:
    raw = mapping(raw, path, "a firewall rule")
    known_keys(raw, path, {"protocol", "from_port", "to_port", "type", "from", "to"})
    for key in ("from", "to", "type"):
        if raw.get(key) is None:
            raise ModelError(join(path, key), "missing")
    action = str(raw["type"]).lower()
    if action not in ("accept", "drop"):
        raise ModelError(join(path, "type"), f"unknown rule type {shown(raw['type'])} (use ACCEPT or DROP)")
    protocol = raw.get("protocol")
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol not in ("tcp", "udp", "icmp"):
            raise ModelError(join(path, "protocol"),
                             f"unknown protocol {shown(raw['protocol'])} (use tcp, udp or icmp)")
    ports = {}
    for key in ("from_port", "to_port"):
        if raw.get(key) is not None:
            ports[key] = parse_count(raw[key], join(path, key), minimum=1)
            if ports[key] > 65535:
                raise ModelError(join(path, key), f"port {raw[key]} is above 65535")
            if protocol not in ("tcp", "udp"):
                raise ModelError(join(path, key), "ports need protocol tcp or udp")
    return FirewallRule(
        source=valid_name(raw["from"], join(path, "from")),
        target=valid_name(raw["to"], join(path, "to")),
        action=action,
        protocol=protocol,
        **ports,
    )
