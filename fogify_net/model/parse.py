"""From a fogified docker-compose document (YAML text or dict) to a validated Model.

The reader is strict where a typo would silently change an experiment
(unknown keys in x-fogify, unknown units, dangling references) and lenient,
with a warning, for compose keys that have no meaning in an emulation. This
module reads the document's frame, nodes and topology; compose.py the
services, networks.py the networks, scenarios.py the scenarios.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from typing import Any

from .compose import parse_service
from .distributions import known_distributions
from .errors import ModelError, join, shown
from .fields import boolean, known_keys, mapping, named_list, optional_text, sequence, unique, valid_name
from .limits import MAX_INSTANCES, MAX_TRACES
from .loader import load_yaml
from .networks import parse_network
from .ports import check_port_clashes
from .scenarios import parse_scenario
from .schema import (
    Attachment,
    Blueprint,
    BoundTrace,
    DelayDistribution,
    Model,
    Network,
    NodeProfile,
    Route,
    TraceTarget,
)
from .traces import TraceFiles, parse_traces
from .units import parse_clock, parse_count, parse_size

ROOT = "x-fogify"


def load_model(path: str | Path) -> Model:
    """Read and validate a fogified compose file; relative bind mounts and trace files resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ModelError("", f"cannot read {path}: {error.strerror}") from None
    return parse_model_text(text, base_dir=path.resolve().parent)


def parse_model_text(text: str, base_dir: Path | None = None, files: dict[str, bytes] | None = None,
                     distributions: Mapping[str, DelayDistribution] | None = None) -> Model:
    return parse_model(load_yaml(text), base_dir=base_dir, files=files, distributions=distributions)


def parse_model(data: Any, base_dir: Path | None = None, files: dict[str, bytes] | None = None,
                distributions: Mapping[str, DelayDistribution] | None = None) -> Model:
    """Validate a compose document already loaded into Python objects.

    Trace files are read from `files` (name as the model writes it -> content,
    what a client uploaded with the model) first, then from `base_dir`.
    `distributions` are the custom delay distributions its latencies may name
    (made by POST /generate-network-distribution/<name>/); the model keeps them.
    """
    with known_distributions(distributions or {}):
        model = _parse_model(data, base_dir, TraceFiles(base_dir, dict(files or {})))
    return replace(model, distributions=dict(distributions or {}))


def _parse_model(data: Any, base_dir: Path | None, traces: TraceFiles) -> Model:
    doc = mapping(data, "", "a docker-compose document")
    warnings: list[str] = []
    services = {
        name: parse_service(name, raw, join("services", name), base_dir, warnings)
        for name, raw in mapping(doc.get("services"), "services", "the compose services").items()
    }
    fog = mapping(doc.get(ROOT), ROOT, "the x-fogify section")
    known_keys(fog, ROOT, {"nodes", "networks", "topology", "scenarios"})

    nodes = named_list(fog.get("nodes", []), join(ROOT, "nodes"), _node)
    networks = named_list(fog.get("networks", []), join(ROOT, "networks"),
                          lambda raw, path: parse_network(raw, path, traces))
    topology_path = join(ROOT, "topology")
    blueprints = tuple(
        _blueprint(raw, join(topology_path, i), services, nodes, networks, traces)
        for i, raw in enumerate(sequence(fog.get("topology"), topology_path))
    )
    if not blueprints:
        raise ModelError(topology_path, "the topology has no blueprints")
    unique([b.label for b in blueprints], topology_path, "label")
    total = sum(b.replicas for b in blueprints)
    if total > MAX_INSTANCES:
        raise ModelError(topology_path, f"{total} instances; a deployment has at most {MAX_INSTANCES}")
    _check_switch_names(networks)
    warnings += check_port_clashes(services, blueprints)
    bound = _bound_traces(networks, blueprints)
    model = Model(services, nodes, networks, blueprints, {}, (), bound)
    _check_network_references(model)
    scenarios = named_list(
        fog.get("scenarios", []), join(ROOT, "scenarios"), lambda raw, path: parse_scenario(raw, path, model)
    )
    warnings += [f"{s.error} (scenario {shown(s.name)} cannot run)" for s in scenarios.values() if s.error]
    used = {b.service for b in blueprints}
    warnings += [f"services.{name}: not used by any blueprint, so not deployed"
                 for name in services if name not in used]
    return Model(services, nodes, networks, blueprints, scenarios, tuple(warnings), bound)


def _bound_traces(networks: dict, blueprints: tuple[Blueprint, ...]) -> tuple[BoundTrace, ...]:
    """Every trace of the model with the place it applies to; names must be unique."""
    bound = []
    for network in networks.values():
        bound += [BoundTrace(spec, TraceTarget(network.name)) for spec in network.traces]
        for link in network.links:
            bound += [BoundTrace(spec, TraceTarget(network.name, link=(link.source, link.target)))
                      for spec in link.traces]
        for cable in network.switch_links:
            bound += [BoundTrace(spec, TraceTarget(network.name, switch_link=(cable.source, cable.target)))
                      for spec in cable.traces]
    for blueprint in blueprints:
        for attachment in blueprint.networks:
            bound += [BoundTrace(spec, TraceTarget(attachment.network, label=blueprint.label))
                      for spec in attachment.traces]
    if len(bound) > MAX_TRACES:
        raise ModelError(join(ROOT, "networks"), f"{len(bound)} traces; a deployment plays at most {MAX_TRACES}")
    seen: set[str] = set()
    for trace in bound:
        if trace.name in seen:
            raise ModelError(join(ROOT, "networks"), f"two traces are named {trace.name!r}: give one a name")
        seen.add(trace.name)
    return tuple(bound)


# --- nodes ------------------------------------------------------------------------


def _node(raw: Any, path: str) -> NodeProfile:
    """A node profile. The processor is Fogify's cores x clock_speed, or `cpus` of this machine; without
    a processor the node may use the whole machine, and without memory it has no memory limit."""
    raw = mapping(raw, path, "a node")
    known_keys(raw, path, {"name", "capabilities", "node_specifications"})
    name = valid_name(raw.get("name"), join(path, "name"))
    caps_path = join(path, "capabilities")
    caps = mapping(raw.get("capabilities"), caps_path, "the node's capabilities")
    known_keys(caps, caps_path, {"processor", "memory", "disk"})
    cpu_path = join(caps_path, "processor")
    cpu = mapping(caps["processor"], cpu_path, "the processor") if "processor" in caps else {}
    known_keys(cpu, cpu_path, {"cores", "clock_speed", "cpus", "shares", "cpuset"})
    cores = clock = cpus = None
    if "cpus" in cpu:
        if "cores" in cpu or "clock_speed" in cpu:
            raise ModelError(join(cpu_path, "cpus"), "give either cpus or cores and clock_speed, not both")
        cpus = _positive(cpu["cpus"], join(cpu_path, "cpus"))
    elif "cores" in cpu or "clock_speed" in cpu:
        if "cores" not in cpu:
            raise ModelError(join(cpu_path, "cores"), "missing")
        if "clock_speed" not in cpu:
            raise ModelError(join(cpu_path, "clock_speed"), "missing (MHz, e.g. 1400)")
        cores = parse_count(cpu["cores"], join(cpu_path, "cores"), minimum=1)
        clock = parse_clock(cpu["clock_speed"], join(cpu_path, "clock_speed"))
    shares = parse_count(cpu["shares"], join(cpu_path, "shares"), minimum=2) if cpu.get("shares") is not None else None
    cpuset = optional_text(cpu.get("cpuset"), join(cpu_path, "cpuset"))
    if cpuset is not None and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpuset):
        raise ModelError(join(cpu_path, "cpuset"), f"expected CPU numbers such as '0,1' or '0-3', got {shown(cpuset)}")
    if "memory" in caps and caps["memory"] is None:
        raise ModelError(join(caps_path, "memory"), "empty (give a size such as 512M, or leave it out for no limit)")
    memory = parse_size(caps["memory"], join(caps_path, "memory")) if "memory" in caps else None
    return NodeProfile(name=name, cores=cores, clock_mhz=clock, memory=memory, cpus=cpus, cpu_shares=shares,
                       cpuset=cpuset)


MAX_CPUS = 4096


def _positive(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_CPUS:
        raise ModelError(path, f"expected a number of CPUs above 0 and at most {MAX_CPUS}, got {shown(value)}")
    return float(value)


# --- topology ---------------------------------------------------------------------


def _blueprint(raw: Any, path: str, services: dict, nodes: dict, networks: dict,
               traces: TraceFiles | None = None) -> Blueprint:
    raw = mapping(raw, path, "a blueprint")
    known_keys(raw, path, {"node", "service", "label", "replicas", "networks", "placement", "forwarding", "routes",
                           "single"})
    for key in ("node", "service", "label"):
        if raw.get(key) is None:
            raise ModelError(join(path, key), "missing")
    label = valid_name(raw["label"], join(path, "label"))
    if raw["node"] not in nodes:
        raise ModelError(join(path, "node"), f"unknown node {shown(raw['node'])} (known: {', '.join(nodes) or 'none'})")
    if raw["service"] not in services:
        raise ModelError(
            join(path, "service"), f"unknown service {shown(raw['service'])} (known: {', '.join(services) or 'none'})"
        )
    replicas = parse_count(raw.get("replicas", 1), join(path, "replicas"), minimum=0)
    nets_path = join(path, "networks")
    attachments = tuple(
        _attachment(item, join(nets_path, i), networks, label, traces)
        for i, item in enumerate(sequence(raw.get("networks"), nets_path))
    )
    unique([a.network for a in attachments], nets_path, "network")
    names = [a.interface or f"eth{k}" for k, a in enumerate(attachments)]
    for i in range(len(attachments)):
        if names.count(names[i]) > 1:
            raise ModelError(join(join(nets_path, i), "interface"), f"interface name {shown(names[i])} is used twice")
    single = boolean(raw.get("single", False), join(path, "single"))
    if single and replicas != 1:
        raise ModelError(join(path, "replicas"), f"a single blueprint has exactly one instance (this has {replicas})")
    routes_path = join(path, "routes")
    routes = tuple(_route(item, join(routes_path, i), names)
                   for i, item in enumerate(sequence(raw.get("routes"), routes_path)))
    if replicas > 1:
        for i, attachment in enumerate(attachments):
            if attachment.ip is not None:
                raise ModelError(join(join(nets_path, i), "ip"), f"a static ip needs replicas: 1 (this has {replicas})")
    placement = raw.get("placement") or {}
    placement = mapping(placement, join(path, "placement"), "placement labels")
    return Blueprint(
        label=label,
        node=raw["node"],
        service=raw["service"],
        replicas=replicas,
        networks=attachments,
        placement=tuple((str(k), optional_text(v, join(join(path, "placement"), str(k)[:80])) or "")
                        for k, v in placement.items()),
        forwarding=boolean(raw.get("forwarding", False), join(path, "forwarding")),
        routes=routes,
        single=single,
    )


def _route(raw: Any, path: str, interfaces: list[str]) -> Route:
    """A static route: {to: CIDR or default, via: gateway address} or {to: ..., dev: interface}."""
    raw = mapping(raw, path, "a route")
    known_keys(raw, path, {"to", "via", "dev"})
    if raw.get("to") is None:
        raise ModelError(join(path, "to"), "missing (a subnet such as 10.0.2.0/24, or default)")
    destination = None
    if str(raw["to"]) != "default":
        try:
            destination = ip_network(str(raw["to"]), strict=False)
        except ValueError:
            raise ModelError(join(path, "to"),
                             f"invalid subnet {shown(raw['to'])} (write e.g. 10.0.2.0/24, or default)") from None
        if not isinstance(destination, IPv4Network):
            raise ModelError(join(path, "to"), "only IPv4 routes are supported")
    via = None
    if raw.get("via") is not None:
        try:
            via = IPv4Address(str(raw["via"]))
        except ValueError:
            raise ModelError(join(path, "via"), f"invalid IPv4 address {shown(raw['via'])}") from None
    device = raw.get("dev")
    if device is not None and device not in interfaces:
        raise ModelError(join(path, "dev"),
                         f"unknown interface {shown(device)} (this blueprint's: {', '.join(interfaces)})")
    if via is None and device is None:
        raise ModelError(path, "give the gateway (via) or the interface (dev) of the route")
    return Route(destination, via, device)


_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
ATTACHMENT_KEYS = {"name", "ip", "switch", "interface", "unnumbered", "trace"}


def _attachment(raw: Any, path: str, networks: dict, label: str, traces: TraceFiles | None = None) -> Attachment:
    """A network entry of a blueprint: a name, {name, ip}, or a full inline definition.

    Our own keys may join any of these: `switch` (where it plugs in, when the
    network has several), `interface` (its name in the container),
    `unnumbered` (no address) and `trace` (this blueprint's own trace there).
    """
    name_path = path if isinstance(raw, str) else join(path, "name")
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = mapping(raw, path, "a network reference")
    name = raw.get("name")
    if name not in networks:
        raise ModelError(name_path, f"unknown network {shown(name)} (known: {', '.join(networks) or 'none'})")
    ip = None
    if raw.get("ip") is not None:
        try:
            ip = IPv4Address(str(raw["ip"]).split("/")[0])
        except ValueError:
            raise ModelError(join(path, "ip"), f"invalid IPv4 address {shown(raw['ip'])}") from None
    inline = any(raw.get(key) is not None for key in ("uplink", "downlink", "bidirectional"))
    override = None
    if inline:
        override = parse_network({k: v for k, v in raw.items() if k not in ATTACHMENT_KEYS - {"name"}}, path)
        _check_override(override, networks[name], path, label)
        for key in ("switches", "switch_links"):
            if raw.get(key) is not None:
                raise ModelError(join(path, key), "switches belong to the network's own definition")
    else:
        known_keys(raw, path, ATTACHMENT_KEYS)
    switch = raw.get("switch")
    if switch is not None and switch not in networks[name].switch_names:
        raise ModelError(join(path, "switch"),
                         f"unknown switch {shown(switch)} (network {shown(name)} has: "
                         f"{', '.join(networks[name].switch_names)})")
    interface = raw.get("interface")
    if interface is not None and (not isinstance(interface, str) or not _INTERFACE.match(interface)
                                  or interface == "lo"):
        raise ModelError(join(path, "interface"), f"invalid interface name {shown(interface)} "
                         "(at most 15 letters, digits, '.', '-', '_'; not lo)")
    unnumbered = boolean(raw.get("unnumbered", False), join(path, "unnumbered"))
    if unnumbered and ip is not None:
        raise ModelError(join(path, "unnumbered"), "an unnumbered interface has no ip")
    own = parse_traces(raw.get("trace"), join(path, "trace"), f"{label}@{name}", traces)
    return Attachment(network=name, ip=ip, override=override, switch=switch, interface=interface,
                      unnumbered=unnumbered, traces=own)


def _check_switch_names(networks: dict) -> None:
    """Switches become bridges, named after them: no two networks may share a switch name."""
    owner: dict[str, str] = {}
    for i, network in enumerate(networks.values()):
        for j, switch in enumerate(network.switch_names):
            if switch in owner and owner[switch] != network.name:
                where = join(join(join(ROOT, "networks"), i), "switches")
                raise ModelError(join(where, j) if network.switches else join(join(join(ROOT, "networks"), i), "name"),
                                 f"switch {shown(switch)} is also a switch of network {shown(owner[switch])}")
            owner[switch] = network.name


def _check_override(override: Network, network: Network, path: str, label: str) -> None:
    """What an inline override may say: its own shaping, and rules about its own blueprint's traffic.

    Its links and firewall rules are rules of the network that must name the
    blueprint (they are applied as if written under x-fogify.networks, see
    Model.links_of); subnet and capacity belong to the whole network, so the
    override may repeat them but not change them.
    """
    for key, mine, shared in (("subnet", override.subnet, network.subnet),
                              ("capacity", override.capacity, network.capacity)):
        if mine is not None and mine != shared:
            raise ModelError(join(path, key), f"{key} belongs to network {shown(network.name)} as a whole "
                                              f"(it is {shared if shared is not None else 'not set'} there): "
                                              f"a blueprint's override may repeat it but not change it")
    for kind, rules, ends in (("links", override.links, ("from_node", "to_node")),
                              ("firewall_rules", override.firewall_rules, ("from", "to"))):
        for j, rule in enumerate(rules):
            if label not in (rule.source, rule.target):
                raise ModelError(join(join(join(path, kind), j), ends[0]),
                                 f"a rule in blueprint {shown(label)}'s override of network "
                                 f"{shown(network.name)} must name {shown(label)} as {ends[0]} or {ends[1]} "
                                 f"(rules between other labels belong in x-fogify.networks)")


def _check_network_references(model: Model) -> None:
    """Links and firewall rules, the network's and its overrides', must name labels that sit on that network."""
    for i, network in enumerate(model.networks.values()):
        members = {b.label for b in model.blueprints if any(a.network == network.name for a in b.networks)}
        path = join(join(ROOT, "networks"), i)
        _check_rule_labels(network, path, members)
        for b, blueprint in enumerate(model.blueprints):
            for k, attachment in enumerate(blueprint.networks):
                if attachment.network == network.name and attachment.override is not None:
                    where = join(join(join(join(ROOT, "topology"), b), "networks"), k)
                    _check_rule_labels(attachment.override, where, members)
        if network.capacity is not None:
            count = sum(b.replicas for b in model.blueprints if any(a.network == network.name for a in b.networks))
            if count > network.capacity:
                raise ModelError(join(path, "capacity"),
                                 f"{count} instances join a network of capacity {network.capacity}")


def _check_rule_labels(network: Network, path: str, members: set[str]) -> None:
    for j, link in enumerate(network.links):
        for key, label in (("from_node", link.source), ("to_node", link.target)):
            if label not in members:
                raise ModelError(join(join(join(path, "links"), j), key),
                                 f"{shown(label)} is not a blueprint label on network {shown(network.name)}")
    for j, rule in enumerate(network.firewall_rules):
        for key, label in (("from", rule.source), ("to", rule.target)):
            if label not in members:
                raise ModelError(join(join(join(path, "firewall_rules"), j), key),
                                 f"{shown(label)} is not a blueprint label on network {shown(network.name)}")


__all__ = ["load_model", "parse_model", "parse_model_text"]
