"""From a fogified docker-compose document (YAML text or dict) to a validated Model.

The reader is strict where a typo would silently change an experiment
(unknown keys in x-fogify, unknown units, dangling references) and lenient,
with a warning, for compose keys that have no meaning in an emulation.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ModelError, join
from .schema import (
    DISTRIBUTIONS,
    Attachment,
    Blueprint,
    FirewallRule,
    LinkRule,
    Model,
    Network,
    NodeProfile,
    QoS,
    QoSPatch,
    Scenario,
    ScenarioAction,
    Service,
    Volume,
)
from .units import (
    parse_clock,
    parse_count,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_seconds,
    parse_size,
)

ROOT = "x-fogify"
# Names end up in DNS names (tasks.<label>.<network>) and instance names (<label>.<n>): no dots.
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")
_SERVICE_KEYS_IGNORED = {
    "networks": "instances join the x-fogify networks of their blueprint",
    "ports": "instances are reachable on the emulated networks only",
    "deploy": "resources come from the x-fogify node profile",
    "depends_on": "all instances start together",
    "restart": "use the crash/restart actions",
    "container_name": "containers are named fogify-net.<label>.<n>",
    "hostname": "the hostname is <label>.<n>",
    "build": "the image must be built beforehand",
    "healthcheck": "not used by the emulation",
    "logging": "container logs stay with Docker",
    "expose": "instances are reachable on the emulated networks only",
    "stdin_open": "not used by the emulation",
    "tty": "not used by the emulation",
}


def load_model(path: str | Path) -> Model:
    """Read and validate a fogified compose file; relative bind mounts resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ModelError("", f"cannot read {path}: {error.strerror}") from None
    return parse_model_text(text, base_dir=path.resolve().parent)


def parse_model_text(text: str, base_dir: Path | None = None) -> Model:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ModelError("", f"not valid YAML: {error}") from None
    return parse_model(data, base_dir=base_dir)


def parse_model(data: Any, base_dir: Path | None = None) -> Model:
    """Validate a compose document already loaded into Python objects."""
    doc = _mapping(data, "", "a docker-compose document")
    warnings: list[str] = []
    services = {
        name: _service(name, raw, join("services", name), base_dir, warnings)
        for name, raw in _mapping(doc.get("services"), "services", "the compose services").items()
    }
    fog = _mapping(doc.get(ROOT), ROOT, "the x-fogify section")
    _known_keys(fog, ROOT, {"nodes", "networks", "topology", "scenarios"})

    nodes = _named_list(fog.get("nodes", []), join(ROOT, "nodes"), _node)
    networks = _named_list(fog.get("networks", []), join(ROOT, "networks"), _network)
    topology_path = join(ROOT, "topology")
    blueprints = tuple(
        _blueprint(raw, join(topology_path, i), services, nodes, networks)
        for i, raw in enumerate(_list(fog.get("topology"), topology_path))
    )
    if not blueprints:
        raise ModelError(topology_path, "the topology has no blueprints")
    _unique([b.label for b in blueprints], topology_path, "label")
    model = Model(services, nodes, networks, blueprints, {}, ())
    _check_network_references(model)
    scenarios = _named_list(
        fog.get("scenarios", []), join(ROOT, "scenarios"), lambda raw, path: _scenario(raw, path, model)
    )
    warnings += [f"{s.error} (scenario {s.name!r} cannot run)" for s in scenarios.values() if s.error]
    used = {b.service for b in blueprints}
    warnings += [f"services.{name}: not used by any blueprint, so not deployed"
                 for name in services if name not in used]
    return Model(services, nodes, networks, blueprints, scenarios, tuple(warnings))


# --- generic shapes ---------------------------------------------------------------


def _mapping(value: Any, path: str, what: str) -> dict:
    if value is None:
        raise ModelError(path, f"{what} is missing")
    if not isinstance(value, dict):
        raise ModelError(path, f"expected a mapping for {what}, got {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelError(path, f"expected a list, got {type(value).__name__}")
    return value


def _known_keys(raw: dict, path: str, allowed: set[str]) -> None:
    for key in raw:
        if not isinstance(key, str):
            raise ModelError(path, f"keys must be text, got {key!r}")
        if key not in allowed and not key.startswith("x-"):
            raise ModelError(join(path, key), f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ModelError(
            path, f"invalid name {value!r}: use letters, digits, '-' and '_' (no dots, no spaces)"
        )
    return value


def _unique(names: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ModelError(join(path, i), f"duplicate {what} {name!r}")
        seen.add(name)


def _named_list(raw: Any, path: str, parse: Callable[[Any, str], Any]) -> dict:
    items = [parse(item, join(path, i)) for i, item in enumerate(_list(raw, path))]
    _unique([item.name for item in items], path, "name")
    return {item.name: item for item in items}


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ModelError(path, f"expected true or false, got {value!r}")


# --- nodes ------------------------------------------------------------------------


def _node(raw: Any, path: str) -> NodeProfile:
    raw = _mapping(raw, path, "a node")
    _known_keys(raw, path, {"name", "capabilities", "node_specifications"})
    name = _name(raw.get("name"), join(path, "name"))
    caps_path = join(path, "capabilities")
    caps = _mapping(raw.get("capabilities"), caps_path, "the node's capabilities")
    _known_keys(caps, caps_path, {"processor", "memory", "disk"})
    cpu_path = join(caps_path, "processor")
    cpu = _mapping(caps.get("processor"), cpu_path, "the processor")
    _known_keys(cpu, cpu_path, {"cores", "clock_speed"})
    if "cores" not in cpu:
        raise ModelError(join(cpu_path, "cores"), "missing")
    if "clock_speed" not in cpu:
        raise ModelError(join(cpu_path, "clock_speed"), "missing (MHz, e.g. 1400)")
    if "memory" not in caps:
        raise ModelError(join(caps_path, "memory"), "missing (e.g. 2G or 512M)")
    return NodeProfile(
        name=name,
        cores=parse_count(cpu["cores"], join(cpu_path, "cores"), minimum=1),
        clock_mhz=parse_clock(cpu["clock_speed"], join(cpu_path, "clock_speed")),
        memory=parse_size(caps["memory"], join(caps_path, "memory")),
    )


# --- networks ---------------------------------------------------------------------


def parse_qos_patch(raw: Any, path: str) -> QoSPatch:
    """One direction as written in a model or an action: bandwidth, latency{...}, drop."""
    raw = _mapping(raw, path, "network characteristics")
    _known_keys(raw, path, {"bandwidth", "latency", "drop", "loss"})
    values: dict[str, Any] = {}
    if raw.get("bandwidth") is not None:
        values["rate"] = parse_rate(raw["bandwidth"], join(path, "bandwidth"))
    for key in ("drop", "loss"):
        if raw.get(key) is not None:
            values["loss"] = parse_percent(raw[key], join(path, key))
    if raw.get("latency") is not None:
        lat_path = join(path, "latency")
        latency = _mapping(raw["latency"], lat_path, "latency")
        _known_keys(latency, lat_path, {"delay", "deviation", "jitter", "correlation", "distribution"})
        if latency.get("delay") is not None:
            values["delay"] = parse_duration(latency["delay"], join(lat_path, "delay"))
        for key in ("deviation", "jitter"):
            if latency.get(key) is not None:
                values["jitter"] = parse_duration(latency[key], join(lat_path, key))
        if latency.get("correlation") is not None:
            values["correlation"] = parse_percent(latency["correlation"], join(lat_path, "correlation"))
        if latency.get("distribution") is not None:
            dist = latency["distribution"]
            if dist not in DISTRIBUTIONS:
                raise ModelError(
                    join(lat_path, "distribution"), f"unknown distribution {dist!r} (use {', '.join(DISTRIBUTIONS)})"
                )
            values["distribution"] = dist
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


def _network(raw: Any, path: str) -> Network:
    raw = _mapping(raw, path, "a network")
    _known_keys(
        raw,
        path,
        {"name", "uplink", "downlink", "bidirectional", "links", "capacity", "subnet",
         "firewall_rules", "packet_level_monitoring"},
    )
    name = _name(raw.get("name"), join(path, "name"))
    up, down = directions(raw, path)
    capacity = None
    if raw.get("capacity") is not None:
        capacity = parse_count(raw["capacity"], join(path, "capacity"), minimum=1)
    subnet = None
    if raw.get("subnet") is not None:
        subnet = _subnet(raw["subnet"], join(path, "subnet"))
    links_path = join(path, "links")
    rules_path = join(path, "firewall_rules")
    return Network(
        name=name,
        uplink=QoS().patched(up),
        downlink=QoS().patched(down),
        links=tuple(_link(item, join(links_path, i)) for i, item in enumerate(_list(raw.get("links"), links_path))),
        capacity=capacity,
        subnet=subnet,
        firewall_rules=tuple(
            _firewall_rule(item, join(rules_path, i))
            for i, item in enumerate(_list(raw.get("firewall_rules"), rules_path))
        ),
        packet_level_monitoring=_bool(raw.get("packet_level_monitoring", False), join(path, "packet_level_monitoring")),
    )


def _subnet(value: Any, path: str) -> IPv4Network:
    try:
        subnet = ip_network(str(value), strict=True)
    except ValueError as error:
        raise ModelError(path, f"invalid subnet {value!r}: {error}") from None
    if subnet.version != 4:
        raise ModelError(path, "only IPv4 subnets are supported")
    if subnet.prefixlen > 30:
        raise ModelError(path, f"subnet {value} is too small (at most /30)")
    return subnet


def parse_link(raw: Any, path: str) -> LinkRule:
    """A per-pair link as Fogify writes it: properties (split per direction) or uplink + downlink."""
    raw = _mapping(raw, path, "a link")
    _known_keys(raw, path, {"from_node", "to_node", "bidirectional", "properties", "uplink", "downlink", "parameters"})
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
    else:
        raise ModelError(path, "a link needs 'properties', or both 'uplink' and 'downlink'")
    return LinkRule(
        source=_name(raw["from_node"], join(path, "from_node")),
        target=_name(raw["to_node"], join(path, "to_node")),
        uplink=up,
        downlink=down,
        bidirectional=_bool(raw.get("bidirectional", False), join(path, "bidirectional")),
    )


_link = parse_link


def _firewall_rule(raw: Any, path: str) -> FirewallRule:
    raw = _mapping(raw, path, "a firewall rule")
    _known_keys(raw, path, {"protocol", "from_port", "to_port", "type", "from", "to"})
    for key in ("from", "to", "type"):
        if raw.get(key) is None:
            raise ModelError(join(path, key), "missing")
    action = str(raw["type"]).lower()
    if action not in ("accept", "drop"):
        raise ModelError(join(path, "type"), f"unknown rule type {raw['type']!r} (use ACCEPT or DROP)")
    protocol = raw.get("protocol")
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol not in ("tcp", "udp", "icmp"):
            raise ModelError(join(path, "protocol"), f"unknown protocol {raw['protocol']!r} (use tcp, udp or icmp)")
    ports = {}
    for key in ("from_port", "to_port"):
        if raw.get(key) is not None:
            ports[key] = parse_count(raw[key], join(path, key), minimum=1)
            if ports[key] > 65535:
                raise ModelError(join(path, key), f"port {raw[key]} is above 65535")
            if protocol not in ("tcp", "udp"):
                raise ModelError(join(path, key), "ports need protocol tcp or udp")
    return FirewallRule(
        source=_name(raw["from"], join(path, "from")),
        target=_name(raw["to"], join(path, "to")),
        action=action,
        protocol=protocol,
        **ports,
    )


# --- topology ---------------------------------------------------------------------


def _blueprint(raw: Any, path: str, services: dict, nodes: dict, networks: dict) -> Blueprint:
    raw = _mapping(raw, path, "a blueprint")
    _known_keys(raw, path, {"node", "service", "label", "replicas", "networks", "placement"})
    for key in ("node", "service", "label"):
        if raw.get(key) is None:
            raise ModelError(join(path, key), "missing")
    label = _name(raw["label"], join(path, "label"))
    if raw["node"] not in nodes:
        raise ModelError(join(path, "node"), f"unknown node {raw['node']!r} (known: {', '.join(nodes) or 'none'})")
    if raw["service"] not in services:
        raise ModelError(
            join(path, "service"), f"unknown service {raw['service']!r} (known: {', '.join(services) or 'none'})"
        )
    replicas = parse_count(raw.get("replicas", 1), join(path, "replicas"), minimum=0)
    nets_path = join(path, "networks")
    attachments = tuple(
        _attachment(item, join(nets_path, i), networks) for i, item in enumerate(_list(raw.get("networks"), nets_path))
    )
    _unique([a.network for a in attachments], nets_path, "network")
    if replicas > 1:
        for i, attachment in enumerate(attachments):
            if attachment.ip is not None:
                raise ModelError(join(join(nets_path, i), "ip"), f"a static ip needs replicas: 1 (this has {replicas})")
    placement = raw.get("placement") or {}
    placement = _mapping(placement, join(path, "placement"), "placement labels")
    return Blueprint(
        label=label,
        node=raw["node"],
        service=raw["service"],
        replicas=replicas,
        networks=attachments,
        placement=tuple((str(k), str(v)) for k, v in placement.items()),
    )


def _attachment(raw: Any, path: str, networks: dict) -> Attachment:
    """A network entry of a blueprint: a name, {name, ip}, or a full inline definition."""
    name_path = path if isinstance(raw, str) else join(path, "name")
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = _mapping(raw, path, "a network reference")
    name = raw.get("name")
    if name not in networks:
        raise ModelError(name_path, f"unknown network {name!r} (known: {', '.join(networks) or 'none'})")
    ip = None
    if raw.get("ip") is not None:
        try:
            ip = IPv4Address(str(raw["ip"]).split("/")[0])
        except ValueError:
            raise ModelError(join(path, "ip"), f"invalid IPv4 address {raw['ip']!r}") from None
    inline = any(raw.get(key) is not None for key in ("uplink", "downlink", "bidirectional"))
    override = None
    if inline:
        override = _network({k: v for k, v in raw.items() if k != "ip"}, path)
    else:
        _known_keys(raw, path, {"name", "ip"})
    return Attachment(network=name, ip=ip, override=override)


def _check_network_references(model: Model) -> None:
    """Links and firewall rules must name labels that sit on that network."""
    for i, network in enumerate(model.networks.values()):
        members = {b.label for b in model.blueprints if any(a.network == network.name for a in b.networks)}
        path = join(join(ROOT, "networks"), i)
        for j, link in enumerate(network.links):
            for key, label in (("from_node", link.source), ("to_node", link.target)):
                if label not in members:
                    raise ModelError(
                        join(join(join(path, "links"), j), key),
                        f"{label!r} is not a blueprint label on network {network.name!r}",
                    )
        for j, rule in enumerate(network.firewall_rules):
            for key, label in (("from", rule.source), ("to", rule.target)):
                if label not in members:
                    raise ModelError(
                        join(join(join(path, "firewall_rules"), j), key),
                        f"{label!r} is not a blueprint label on network {network.name!r}",
                    )
        if network.capacity is not None:
            count = sum(b.replicas for b in model.blueprints if any(a.network == network.name for a in b.networks))
            if count > network.capacity:
                raise ModelError(join(path, "capacity"),
                                 f"{count} instances join a network of capacity {network.capacity}")


# --- services ---------------------------------------------------------------------


def _service(name: str, raw: Any, path: str, base_dir: Path | None, warnings: list[str]) -> Service:
    _name(name, path)
    raw = _mapping(raw, path, "a service")
    for key, reason in _SERVICE_KEYS_IGNORED.items():
        if key in raw and not (key == "build" and raw.get("image")):
            if key == "build":
                raise ModelError(join(path, "image"),
                                 "missing; build the image first (docker build -t NAME ...) and give its name")
            warnings.append(f"{join(path, key)}: ignored ({reason})")
    known = {"image", "environment", "volumes", "command", "entrypoint", "working_dir", "user", "labels",
             "cap_add", "privileged"}
    for key in raw:
        if key not in known and key not in _SERVICE_KEYS_IGNORED:
            warnings.append(f"{join(path, key)}: not supported, ignored")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ModelError(join(path, "image"), "missing (the Docker image to run)")
    return Service(
        name=name,
        image=image.strip(),
        environment=_environment(raw.get("environment"), join(path, "environment")),
        volumes=tuple(
            _volume(v, join(join(path, "volumes"), i), base_dir)
            for i, v in enumerate(_list(raw.get("volumes"), join(path, "volumes")))
        ),
        command=_command(raw.get("command"), join(path, "command")),
        entrypoint=_command(raw.get("entrypoint"), join(path, "entrypoint")),
        working_dir=_optional_text(raw.get("working_dir"), join(path, "working_dir")),
        user=_optional_text(raw.get("user"), join(path, "user")),
        labels=_environment(raw.get("labels"), join(path, "labels")),
        cap_add=tuple(str(c) for c in _list(raw.get("cap_add"), join(path, "cap_add"))),
        privileged=_bool(raw.get("privileged", False), join(path, "privileged")),
    )


def _optional_text(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ModelError(path, f"expected text, got {type(value).__name__}")
    return str(value)


def _environment(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    """Compose environment: a mapping or a list of KEY=VALUE."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        pairs = [(str(k), "" if v is None else _scalar_text(v)) for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = []
        for i, item in enumerate(raw):
            if not isinstance(item, str) or "=" not in item:
                raise ModelError(join(path, i), f"expected KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            pairs.append((key, value))
    else:
        raise ModelError(path, f"expected a mapping or a list of KEY=VALUE, got {type(raw).__name__}")
    for i, (key, _) in enumerate(pairs):
        if not key or "=" in key:
            raise ModelError(join(path, i), f"invalid variable name {key!r}")
    return tuple(pairs)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _command(raw: Any, path: str) -> tuple[str, ...] | str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(isinstance(x, (str, int, float)) for x in raw):
        return tuple(str(x) for x in raw)
    raise ModelError(path, "expected a string or a list of strings")


def _volume(raw: Any, path: str, base_dir: Path | None) -> Volume:
    """Compose short ('src:dst[:ro]', '/anon') or long ({type, source, target, read_only}) syntax."""
    if isinstance(raw, dict):
        _known_keys(raw, path, {"type", "source", "target", "read_only"})
        if not raw.get("target"):
            raise ModelError(join(path, "target"), "missing")
        source, target, read_only = str(raw.get("source") or ""), str(raw["target"]), bool(raw.get("read_only"))
    elif isinstance(raw, str):
        parts = raw.split(":")
        if len(parts) == 1:
            source, target, read_only = "", parts[0], False
        elif len(parts) in (2, 3):
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) == 3 else "rw"
            if mode not in ("ro", "rw"):
                raise ModelError(path, f"unknown volume mode {mode!r} (use ro or rw)")
            read_only = mode == "ro"
        else:
            raise ModelError(path, f"cannot read volume {raw!r} (write SOURCE:TARGET[:ro])")
    else:
        raise ModelError(path, f"expected a volume string or mapping, got {type(raw).__name__}")
    if not target.startswith("/"):
        raise ModelError(path, f"the target {target!r} must be an absolute path in the container")
    if source.startswith(("./", "../", "~")) or source in (".", ".."):
        if source.startswith("~"):
            source = str(Path(source).expanduser())
        elif base_dir is None:
            raise ModelError(path, f"relative path {source!r} needs the compose file's location")
        else:
            source = str((base_dir / source).resolve())
    elif source and not source.startswith("/") and not _NAME.match(source):
        raise ModelError(path, f"invalid volume name {source!r}")
    return Volume(source=source, target=target, read_only=read_only)


# --- scenarios ----------------------------------------------------------------------


_ACTION_ALIASES = {
    "scale-in": "horizontal_scaling",
    "scale-out": "horizontal_scaling",
    "scale_in": "horizontal_scaling",
    "scale_out": "horizontal_scaling",
    "update_links": "links",
}


def _scenario(raw: Any, path: str, model: Model) -> Scenario:
    from .actions import ACTION_TYPES, parse_action

    raw = _mapping(raw, path, "a scenario")
    _known_keys(raw, path, {"name", "actions"})
    name = _name(raw.get("name"), join(path, "name"))
    actions_path = join(path, "actions")
    actions = []
    error = None
    for i, item in enumerate(_list(raw.get("actions"), actions_path)):
        item_path = join(actions_path, i)
        item = _mapping(item, item_path, "a scenario action")
        _known_keys(item, item_path, {"time", "position", "instance_type", "instances", "action"})
        action = item.get("action")
        if isinstance(action, str):  # Fogify's demo writes action: "NOOP"
            action = {"type": action}
        action = _mapping(action, join(item_path, "action"), "the action")
        _known_keys(action, join(item_path, "action"), {"type", "parameters"})
        kind = str(action.get("type", "")).lower()
        parameters = dict(action.get("parameters") or {})
        if kind in ("scale-in", "scale_in", "scale-out", "scale_out"):
            parameters.setdefault("type", "down" if kind.endswith("in") else "up")
            if "num-of-instances" in parameters:
                parameters.setdefault("instances", parameters.pop("num-of-instances"))
        kind = _ACTION_ALIASES.get(kind, kind)
        if kind not in ACTION_TYPES:
            raise ModelError(
                join(join(item_path, "action"), "type"),
                f"unknown action type {action.get('type')!r} (use {', '.join(sorted(ACTION_TYPES))})",
            )
        time = parse_seconds(item.get("time", 0), join(item_path, "time"))
        instances = None
        if item.get("instances") not in (None, ""):
            instances = parse_count(item["instances"], join(item_path, "instances"), minimum=1)
        instance_type = str(item.get("instance_type") or "")
        if kind != "noop":
            # Validate now, so a broken scenario fails at deploy, not minutes into an experiment.
            params = {**parameters, "instance_type": instance_type}
            if instances is not None:
                params.setdefault("instances", instances)
            try:
                parse_action(kind, params, join(join(item_path, "action"), "parameters"), model)
            except ModelError as problem:
                error = error or str(problem)
        actions.append(
            ScenarioAction(
                position=parse_count(item.get("position", i), join(item_path, "position")),
                time=time,
                instance_type=instance_type,
                instances=instances,
                type=kind,
                parameters=parameters,
            )
        )
    return Scenario(name=name, actions=tuple(sorted(actions, key=lambda a: a.position)), error=error)


__all__ = ["load_model", "parse_model", "parse_model_text", "parse_qos_patch", "parse_link", "directions"]
