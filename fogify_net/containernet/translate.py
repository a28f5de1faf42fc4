"""A Mininet/Containernet topology (nodes and links as a script adds them) as a fogified compose document.

The script's vocabulary becomes the model's, so a Python topology deploys,
validates and runs exactly like a YAML file:

- a switch, and every switch reachable from it by switch-to-switch links, is
  one network (a layer-2 segment) with those switches and shaped switch links;
  a host-to-host link becomes a network of its own with one switch;
- every host (addHost or addDocker) is a single blueprint named after it, with
  its own service (image, command, environment, volumes) and node profile
  (CPU and memory limits);
- a link's parameters follow Mininet's TCLink: they shape each of its two
  interfaces' egress (a host's uplink and its switch port's downlink, or a
  switch link's two directions), and only when the link class is a TCLink,
  as in Mininet; the common parameters win over params1/params2, as in Mininet;
- a host's `ip` goes to its first interface (lowest port); other interfaces get
  the `ip` of their link's params1/params2, or no address; a network's subnet
  is the one its addresses share;
- `defaultRoute` (Mininet) and `routes` (ours) become static routes; a host
  another host routes through forwards (a router), as does one given
  `forwarding=True`.

Pure: images are checked through the callable the caller passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, ip_interface
from typing import Any

from ..model.errors import ModelError
from ..model.fields import NAME

BASE_IMAGE = "fogify-net/base:latest"
KEEPALIVE = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]
SHELL_LABEL = "fogify-net.shell"  # exec: node.cmd runs inside the container; netns: a host shell in its namespace
TC_OPTIONS = {"bw", "delay", "jitter", "loss", "max_queue_size"}
TC_IGNORED = {"speedup", "use_hfsc", "use_tbf", "latency_ms", "enable_ecn", "enable_red", "gro", "txo", "rxo"}
DOCKER_OPTIONS = {"dimage", "dcmd", "environment", "volumes", "cpu_quota", "cpu_period", "cpu_shares", "cpus",
                  "cpuset_cpus", "mem_limit", "memswap_limit", "cap_add", "privileged", "ports", "port_bindings",
                  "publish_all_ports", "build_params", "rm"}
HOST_OPTIONS = {"ip", "mac", "defaultRoute", "routes", "forwarding", "inNamespace", "cls", "privateDirs"}
CPU_LIMITED_OPTIONS = {"cpu", "cores", "sched", "period_us"}  # Mininet's CPULimitedHost


@dataclass
class NodeSpec:
    """A node as the script added it."""

    name: str
    kind: str  # "docker", "host" or "switch"
    params: dict[str, Any] = field(default_factory=dict)
    cls: str = ""  # its class's name, for messages
    own_class: bool = False  # the script's own host class, whose config() takes parameters of its own


@dataclass
class LinkSpec:
    """A link as the script added it, each end's parameters already merged as Mininet does."""

    node1: str
    node2: str
    port1: int
    port2: int
    params1: dict[str, Any]
    params2: dict[str, Any]
    shaped: bool  # a TCLink: bw, delay, jitter, loss, max_queue_size apply
    intf1: str | None = None
    intf2: str | None = None


@dataclass
class Interface:
    host: str
    port: int
    name: str
    network: str
    switch: str
    up: dict[str, Any]  # TCLink parameters of the host's egress
    down: dict[str, Any]  # of the switch port's egress (nothing on a host-to-host link)
    ip: IPv4Interface | None = None


def document(nodes: list[NodeSpec], links: list[LinkSpec], image_exists: Callable[[str], bool] | None = None,
             scenarios: list[dict] | None = None, cores: int = 1) -> tuple[dict[str, Any], list[str]]:
    """The compose document of a topology, and warnings about what it leaves out. `cores`: the CPUs of
    the machine it runs on (CPULimitedHost's `cpu` is a fraction of all of them)."""
    warnings: list[str] = []
    by_name = {node.name: node for node in nodes}
    for node in nodes:
        if not NAME.match(node.name):
            raise ModelError(f"node {node.name!r}", "use letters, digits, '-' and '_' (no dots, no spaces)")
    segments, direct = _segments(nodes, links)
    interfaces = _interfaces(nodes, links, segments, direct, warnings)
    _addresses(by_name, interfaces)
    subnets = _subnets(segments, interfaces, warnings)
    networks = []
    for network, switches in segments.items():
        entry: dict[str, Any] = {"name": network, "subnet": str(subnets[network])}
        if len(switches) > 1:
            entry["switches"] = switches
            entry["switch_links"] = [_switch_link(link, warnings) for link in links
                                     if link.node1 in switches and link.node2 in switches]
        networks.append(entry)
    gateways = {str(route.get("via")) for node in nodes for route in _routes(node)}
    services, profiles, topology = {}, {}, []
    for node in nodes:
        if node.kind == "switch":
            continue
        mine = sorted((i for i in interfaces if i.host == node.name), key=lambda i: i.port)
        _check_one_link_per_network(node, mine)
        services[node.name] = _service(node, image_exists, warnings)
        profile = _profile(node, warnings, cores)
        key = repr(sorted(profile.items()))
        profiles.setdefault(key, {"name": f"{node.name}-node" if profile else "unlimited", "capabilities": profile})
        own_ips = {str(i.ip.ip) for i in mine if i.ip is not None}
        blueprint: dict[str, Any] = {
            "label": node.name, "service": node.name, "node": profiles[key]["name"], "replicas": 1, "single": True,
            "networks": [_attachment(i, len(segments[i.network]) > 1, warnings) for i in mine],
        }
        if node.params.get("forwarding") or own_ips & gateways:
            blueprint["forwarding"] = True
        if routes := _routes(node):
            blueprint["routes"] = routes
        topology.append(blueprint)
    fog: dict[str, Any] = {"nodes": list(profiles.values()), "networks": networks, "topology": topology}
    if scenarios:
        fog["scenarios"] = scenarios
    return {"version": "3.7", "services": services, "x-fogify": fog}, warnings


# --- segments, interfaces and addresses ----------------------------------------------------


def _segments(nodes: list[NodeSpec], links: list[LinkSpec]) -> tuple[dict[str, list[str]], dict[int, str]]:
    """Network name -> its switches: switches joined by switch links, and one per host-to-host link
    (also returned by link position)."""
    kinds = {node.name: node.kind for node in nodes}
    switches = [node.name for node in nodes if node.kind == "switch"]
    parent = {name: name for name in switches}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for link in links:
        if kinds[link.node1] == kinds[link.node2] == "switch":
            a, b = root(link.node1), root(link.node2)
            if a == b:
                raise ModelError(f"link {link.node1}-{link.node2}", "closes a loop of switches (Linux bridges run "
                                 "without spanning tree here; keep the switch links a tree)")
            parent[a] = b
    segments: dict[str, list[str]] = {}
    for name in switches:
        first = next(s for s in switches if root(s) == root(name))
        segments.setdefault(first, []).append(name)
    direct = {}
    for position, link in enumerate(links):
        if kinds[link.node1] != "switch" and kinds[link.node2] != "switch":
            name = f"{link.node1}-{link.node2}"
            while name in kinds or name in segments:
                name += "x"
            segments[name] = [name]
            direct[position] = name
    return segments, direct


def _interfaces(nodes: list[NodeSpec], links: list[LinkSpec], segments: dict[str, list[str]],
                direct: dict[int, str], warnings: list[str]) -> list[Interface]:
    kinds = {node.name: node.kind for node in nodes}
    network_of = {switch: name for name, switches in segments.items() for switch in switches}
    found = []
    for position, link in enumerate(links):
        ends = ((link.node1, link.port1, link.intf1, link.params1, link.node2, link.params2),
                (link.node2, link.port2, link.intf2, link.params2, link.node1, link.params1))
        for host, port, name, mine, other, theirs in ends:
            if kinds[host] == "switch":
                if name:
                    warnings.append(f"link {link.node1}-{link.node2}: switch port name {name!r} not used "
                                    "(fogify-net names bridge ports itself)")
                continue
            up = _tc(mine, link, warnings)
            if position in direct:  # a network of its own; no switch port to shape on the way in
                found.append(Interface(host, port, name or f"{host}-eth{port}", direct[position], direct[position],
                                       up, {}))
            else:
                found.append(Interface(host, port, name or f"{host}-eth{port}", network_of[other], other, up,
                                       _tc(theirs, link, warnings)))
            found[-1].ip = _ip(mine.get("ip"), f"link {link.node1}-{link.node2}") if mine.get("ip") else None
    return found


def _ip(value: Any, where: str) -> IPv4Interface:
    """An address as Mininet takes it: with a prefix, or /8 (Mininet's default prefix length)."""
    text = str(value)
    try:
        address = ip_interface(text if "/" in text else f"{text}/8")
    except ValueError:
        raise ModelError(f"{where}.ip", f"invalid IPv4 address {value!r}") from None
    if address.version != 4:
        raise ModelError(f"{where}.ip", "only IPv4 addresses are supported")
    return address


def _addresses(nodes: dict[str, NodeSpec], interfaces: list[Interface]) -> None:
    """A host's `ip` goes to its lowest port, unless that link's own params gave one."""
    for host in {i.host for i in interfaces}:
        first = min((i for i in interfaces if i.host == host), key=lambda i: i.port)
        if first.ip is None and nodes[host].params.get("ip"):
            first.ip = _ip(nodes[host].params["ip"], f"node {host}")


def _subnets(segments: dict[str, list[str]], interfaces: list[Interface],
             warnings: list[str]) -> dict[str, IPv4Network]:
    """One subnet per network: the one its addresses share (the widest), else a free /24."""
    subnets: dict[str, IPv4Network] = {}
    for network in segments:
        found = sorted({i.ip.network for i in interfaces if i.network == network and i.ip is not None},
                       key=lambda n: n.prefixlen)
        if not found:
            continue
        widest = found[0]
        for other in found[1:]:
            if not other.subnet_of(widest):
                raise ModelError(f"network {network}", f"addresses in {widest} and {other} on one segment: "
                                 "fogify-net gives a segment one subnet")
            warnings.append(f"network {network}: addresses of {other} take its subnet {widest}")
        subnets[network] = widest
    for network in segments:
        if network not in subnets:
            subnets[network] = next(
                IPv4Network(f"192.168.{third}.0/24") for third in range(255, -1, -1)
                if not any(IPv4Network(f"192.168.{third}.0/24").overlaps(s) for s in subnets.values()))
    return subnets


def _check_one_link_per_network(node: NodeSpec, interfaces: list[Interface]) -> None:
    seen: dict[str, str] = {}
    for interface in interfaces:
        if interface.network in seen:
            raise ModelError(f"node {node.name}", f"{seen[interface.network]} and {interface.name} both lead into "
                             f"segment {interface.network}; fogify-net gives a host one interface per segment")
        seen[interface.network] = interface.name


# --- links ---------------------------------------------------------------------------------


def _tc(params: dict[str, Any], link: LinkSpec, warnings: list[str]) -> dict[str, Any]:
    """One interface's TCLink parameters (empty unless the link is a TCLink)."""
    given = {key: value for key, value in params.items() if key in TC_OPTIONS and value is not None}
    if given and not link.shaped:
        warnings.append(f"link {link.node1}-{link.node2}: {', '.join(sorted(given))} ignored, as in Mininet: "
                        "the link class is not a TCLink (use cls=TCLink)")
        return {}
    for key in sorted(set(params) & TC_IGNORED):
        if key not in ("txo", "rxo", "gro"):
            warnings.append(f"link {link.node1}-{link.node2}: {key} is not supported, ignored")
    return given


def tc_direction(tc: dict[str, Any]) -> dict[str, Any] | None:
    """TCLink parameters as a model direction: bandwidth, latency, drop, queue."""
    out: dict[str, Any] = {}
    if tc.get("bw") is not None:
        out["bandwidth"] = f"{float(tc['bw']):g}Mbps"
    latency = {}
    for key, name in (("delay", "delay"), ("jitter", "deviation")):
        if tc.get(key) is not None:
            value = tc[key]
            latency[name] = value if isinstance(value, str) else f"{value}us"  # tc reads a bare number as us
    if latency:
        out["latency"] = latency
    if tc.get("loss"):
        out["drop"] = f"{float(tc['loss']):g}%"
    if tc.get("max_queue_size") is not None:
        out["queue"] = int(tc["max_queue_size"])
    return out or None


def _switch_link(link: LinkSpec, warnings: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"from": link.node1, "to": link.node2}
    for key, params in (("forward", link.params1), ("backward", link.params2)):
        if direction := tc_direction(_tc(params, link, warnings)):
            entry[key] = direction
    return entry


def _attachment(interface: Interface, several_switches: bool, warnings: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": interface.network, "interface": interface.name}
    if several_switches:
        entry["switch"] = interface.switch
    if interface.ip is None:
        entry["unnumbered"] = True
    else:
        entry["ip"] = str(interface.ip.ip)
    for key, tc in (("uplink", interface.up), ("downlink", interface.down)):
        if direction := tc_direction(tc):
            entry[key] = direction
    return entry


# --- hosts: routes, service, node profile ------------------------------------------------------


def _routes(node: NodeSpec) -> list[dict[str, Any]]:
    """Mininet's defaultRoute ('via 10.0.0.1' or an interface name) and our `routes` list."""
    routes = []
    default = node.params.get("defaultRoute")
    if default:
        words = str(default).split()
        if len(words) == 1:
            routes.append({"to": "default", "dev": words[0]})
        elif words[0] in ("via", "dev") and len(words) in (2, 4):
            route = {"to": "default", words[0]: words[1]}
            if len(words) == 4 and words[2] in ("via", "dev"):
                route[words[2]] = words[3]
            routes.append(route)
        else:
            raise ModelError(f"node {node.name}.defaultRoute", f"cannot read {default!r} (write 'via <gateway>')")
    for route in node.params.get("routes") or []:
        if isinstance(route, (tuple, list)) and len(route) == 2:
            routes.append({"to": str(route[0]), "via": str(route[1])})
        elif isinstance(route, dict):
            routes.append(dict(route))
        else:
            raise ModelError(f"node {node.name}.routes", f"expected (subnet, gateway) or {{to, via}}, got {route!r}")
    return routes


def _service(node: NodeSpec, image_exists: Callable[[str], bool] | None, warnings: list[str]) -> dict[str, Any]:
    params = node.params
    known = HOST_OPTIONS | (DOCKER_OPTIONS if node.kind == "docker" else set())
    for key in sorted(set(params) - known - CPU_LIMITED_OPTIONS if not node.own_class else ()):
        warnings.append(f"{node.name}: {key} is not supported, ignored")
    if params.get("mac"):
        warnings.append(f"{node.name}: mac ignored (fogify-net derives MACs from the addresses)")
    image = BASE_IMAGE
    if node.kind == "docker":
        image = params.get("dimage") or BASE_IMAGE
        if image != BASE_IMAGE and image_exists is not None and not image_exists(image):
            warnings.append(f"{node.name}: image {image!r} is not on this machine and there is no registry; "
                            f"it runs {BASE_IMAGE} instead")
            image = BASE_IMAGE
    command = params.get("dcmd") if node.kind == "docker" else None
    service: dict[str, Any] = {"image": image, "entrypoint": [], "command": command or list(KEEPALIVE),
                               "labels": {SHELL_LABEL: "exec" if node.kind == "docker" else "netns"}}
    if node.kind == "docker":
        if params.get("environment"):
            service["environment"] = {str(k): str(v) for k, v in dict(params["environment"]).items()}
        if params.get("volumes"):
            service["volumes"] = list(params["volumes"])
        for key in ("cap_add", "privileged"):
            if params.get(key):
                service[key] = params[key]
        ports = _published(node)
        if ports:
            service["ports"] = ports
    return service


def _published(node: NodeSpec) -> list[dict[str, Any]]:
    """Docker's port_bindings ({container port: host port, (ip, port), (ip,), None or a list of them}) and
    `ports` (container ports; with publish_all_ports, Containernet's default, each on a free host port) as
    compose's long syntax. Docker binds 0.0.0.0 unless told; fogify-net 127.0.0.1 (model/ports.py)."""
    bindings = node.params.get("port_bindings") or {}
    if not isinstance(bindings, dict):
        raise ModelError(f"node {node.name}.port_bindings",
                         f"expected {{container port: host port}}, got {bindings!r}")
    entries: list[dict[str, Any]] = []
    for key, value in bindings.items():
        target, _, protocol = str(key).partition("/")
        for binding in value if isinstance(value, list) else [value]:
            entry: dict[str, Any] = {"target": target, "protocol": protocol or "tcp"}
            if isinstance(binding, tuple):
                entry["host_ip"] = binding[0]
                binding = binding[1] if len(binding) > 1 else None
            if binding is not None:
                entry["published"] = binding
            entries.append(entry)
    bound = {str(key).partition("/")[0] for key in bindings}
    if node.params.get("publish_all_ports", True):
        for port in node.params.get("ports") or []:
            if isinstance(port, tuple):  # docker-py's (port, protocol)
                target, protocol = port[0], port[1]
            else:
                target, _, protocol = str(port).partition("/")
            if str(target) not in bound:
                entries.append({"target": target, "protocol": protocol or "tcp"})
    return entries


def _profile(node: NodeSpec, warnings: list[str], cores: int) -> dict[str, Any]:
    """The node profile of a host: exact CPUs from cpu_quota/cpu_period (or cpus, or CPULimitedHost's `cpu`,
    a fraction of the machine's `cores`), shares, cpuset (or CPULimitedHost's `cores`), memory."""
    params = node.params
    processor: dict[str, Any] = {}
    if params.get("cpu_quota") and int(params["cpu_quota"]) > 0:
        processor["cpus"] = int(params["cpu_quota"]) / int(params.get("cpu_period") or 100_000)
    elif params.get("cpus"):
        processor["cpus"] = float(params["cpus"])
    if params.get("cpu_shares"):
        processor["shares"] = int(params["cpu_shares"])
    if params.get("cpuset_cpus"):
        processor["cpuset"] = str(params["cpuset_cpus"])
    cpu = params.get("cpu")
    if cpu is not None and float(cpu) > 0 and "cpus" not in processor:  # a fraction of the whole machine
        processor["cpus"] = round(float(cpu) * cores, 4)
        if params.get("sched") == "rt":
            warnings.append(f"{node.name}: sched='rt' runs as 'cfs' (a CPU quota): containers here get no "
                            "real-time CPU time")
    cores_given = params.get("cores")
    if cores_given not in (None, "", []) and "cpuset" not in processor:
        processor["cpuset"] = (",".join(str(c) for c in cores_given) if isinstance(cores_given, (list, tuple))
                               else str(cores_given))
    profile: dict[str, Any] = {"processor": processor} if processor else {}
    memory = params.get("mem_limit")
    if memory:
        profile["memory"] = f"{memory}b" if isinstance(memory, int) else str(memory)
    return profile
