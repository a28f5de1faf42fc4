"""The vocabulary of runtime actions: typed requests parsed from Fogify's parameter shapes.

The REST API and the scenarios share this parser, so an action is validated the
same way whether a notebook sends it now or a scenario fires it in ten minutes.
It accepts every shape Fogify's SDK, controller and documentation use (see
fogify.md §4) and the seed's `scale-in`/`scale-out` forms.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError, join, shown
from .fields import valid_name
from .limits import MAX_COMMAND_TIMEOUT_S, MAX_INSTANCES, MAX_OVERLAP_S
from .networks import directions, parse_link, parse_qos_patch
from .schema import BoundTrace, LinkRule, Model, QoSPatch, TraceTarget
from .traces import parse_trace_spec
from .units import parse_count, parse_percent, parse_seconds, parse_size

_INSTANCE = re.compile(r"^(?P<label>[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?)(\.(?P<slot>\d+))?\Z")


@dataclass(frozen=True)
class Target:
    """Which instances an action hits: every replica of a label, or one slot; at most `count` of them."""

    label: str
    slot: int | None = None
    count: int | None = None

    def __str__(self) -> str:
        return self.label if self.slot is None else f"{self.label}.{self.slot}"


@dataclass(frozen=True)
class HorizontalScaling:
    target: Target
    up: bool
    count: int


@dataclass(frozen=True)
class VerticalScaling:
    target: Target
    resource: str  # "cpu" or "memory"
    relative_percent: float | None = None  # +20 -> 20.0, -20 -> -20.0
    absolute: float | None = None  # cpus for cpu, bytes for memory


@dataclass(frozen=True)
class NetworkChange:
    target: Target
    network: str
    uplink: QoSPatch | None
    downlink: QoSPatch | None


@dataclass(frozen=True)
class LinksChange:
    network: str
    links: tuple[LinkRule, ...]


@dataclass(frozen=True)
class Stress:
    target: Target
    duration: float  # seconds
    cpu: float | None = None  # percent of the instance's CPU allocation
    io: float | None = None
    vm: float | None = None
    vm_bytes: int | None = None


@dataclass(frozen=True)
class Command:
    target: Target
    command: str | tuple[str, ...]
    wait: bool = False
    timeout: float | None = None


@dataclass(frozen=True)
class LinkState:
    target: Target
    network: str
    up: bool


@dataclass(frozen=True)
class SwitchLinkChange:
    """A cable between two switches: plug it out or in, and/or change its shaping.

    `forward` is what travels from the first switch named to the second,
    `backward` the other way (whatever order the model declared them in).
    """

    switches: tuple[str, str]
    up: bool | None = None
    forward: QoSPatch | None = None
    backward: QoSPatch | None = None


@dataclass(frozen=True)
class Partition:
    source: str
    target: str
    network: str | None
    heal: bool


@dataclass(frozen=True)
class Lifecycle:
    target: Target
    restart: bool  # False = crash


@dataclass(frozen=True)
class Move:
    """Detach the instances from one network and attach them to another (handover).

    `source` None: the network each instance leaves is the only one it is on.
    `overlap` 0 is break-before-make; above 0 the new attachment comes first
    and the old one stays that many seconds (make-before-break).
    """

    target: Target
    to: str
    source: str | None = None
    overlap: float = 0.0


TRACE_COMMANDS = ("start", "stop", "pause", "resume")


@dataclass(frozen=True)
class TraceAction:
    """Start, stop, pause or resume a trace by name (None: every trace), or start `inline`, given in the request."""

    command: str
    name: str | None = None
    inline: BoundTrace | None = None


@dataclass(frozen=True)
class Noop:
    pass


def parse_target(params: dict, path: str, model: Model | None, single_label: bool = False) -> Target:
    """`instance_type` (label or label.N) and `instances` (a count) into a Target."""
    raw = params.get("instance_type")
    if raw is None or raw == "":
        raise ModelError(join(path, "instance_type"), "missing (a blueprint label, or label.N for one replica)")
    match = _INSTANCE.match(str(raw))
    if not match:
        raise ModelError(join(path, "instance_type"), f"invalid instance {shown(raw)} (write label or label.N)")
    label, slot = match["label"], match["slot"]
    if model is not None and model.blueprint(label) is None:
        known = ", ".join(b.label for b in model.blueprints)
        raise ModelError(join(path, "instance_type"), f"unknown label {shown(label)} (known: {known})")
    if single_label and slot is not None:
        raise ModelError(join(path, "instance_type"), f"this action takes a label, not one replica ({shown(raw)})")
    count = None
    if params.get("instances") not in (None, ""):
        count = parse_count(params["instances"], join(path, "instances"), minimum=1)
    return Target(label=label, slot=int(slot) if slot else None, count=count)


def _network_name(value: Any, path: str, model: Model | None) -> str:
    if not isinstance(value, str) or not value:
        raise ModelError(path, "missing (a network name)")
    if model is not None and value not in model.networks:
        raise ModelError(path, f"unknown network {shown(value)} (known: {', '.join(model.networks)})")
    return value


def parse_action(kind: str, params: Any, path: str = "params", model: Model | None = None):
    """Parse one action's parameters. `kind` is the route's type, e.g. 'network'."""
    kind = kind.lower()
    if kind not in ACTION_TYPES:
        raise ModelError("", f"unknown action type {shown(kind)} (use {', '.join(sorted(ACTION_TYPES))})")
    if not isinstance(params, dict):
        raise ModelError(path, "expected a mapping of parameters")
    return ACTIONS[kind].parse(params, path, model)


def _horizontal(params: dict, path: str, model: Model | None) -> HorizontalScaling:
    target = parse_target(params, path, model, single_label=True)
    direction = str(params.get("type", "")).lower()
    if direction in ("up", "out", "scale-out", "scale_out"):
        up = True
    elif direction in ("down", "in", "scale-in", "scale_in"):
        up = False
    else:
        raise ModelError(join(path, "type"), f"expected 'up' or 'down', got {shown(params.get('type'))}")
    count = target.count if target.count is not None else 1
    if count > MAX_INSTANCES:
        raise ModelError(join(path, "instances"), f"at most {MAX_INSTANCES} instances in a deployment, got {count}")
    return HorizontalScaling(target=Target(target.label), up=up, count=count)


def _vertical(params: dict, path: str, model: Model | None) -> VerticalScaling:
    target = parse_target(params, path, model)
    action = params.get("action")
    if isinstance(action, dict):  # the shape Fogify's controller expected: action: {action, value}
        resource, value, value_path = action.get("action"), action.get("value"), join(path, "action")
    elif isinstance(action, str):  # the shape Fogify's SDK sends: action: "cpu", value: "+20"
        resource, value, value_path = action, params.get("value"), path
    else:  # the documented shape: cpu: ... or memory: ...
        given = [key for key in ("cpu", "memory") if params.get(key) is not None]
        if len(given) != 1:
            raise ModelError(path, "give exactly one of cpu or memory (or action: cpu|memory with value)")
        resource, value, value_path = given[0], params[given[0]], path
    resource = str(resource).lower()
    if resource not in ("cpu", "memory"):
        raise ModelError(join(value_path, "action"), f"expected 'cpu' or 'memory', got {shown(resource)}")
    value_path = join(value_path, "value")
    if value is None or value == "":
        raise ModelError(value_path, "missing")
    text = str(value).strip()
    if text[:1] in "+-":
        number = _float(text[1:].rstrip("%"), value_path)
        return VerticalScaling(target, resource, relative_percent=number if text[0] == "+" else -number)
    if resource == "cpu":
        cpus = _float(text, value_path)
        if cpus <= 0:
            raise ModelError(value_path, "the CPU allocation must be positive")
        return VerticalScaling(target, resource, absolute=cpus)
    return VerticalScaling(target, resource, absolute=float(parse_size(text, value_path)))


def _float(text: str, path: str, maximum: float = 1e6) -> float:
    """A finite number no larger than `maximum` (a CPU count, a percentage): nan, inf and 1e400 are errors."""
    try:
        number = float(text)
    except ValueError:
        raise ModelError(path, f"expected a number, got {shown(text)}") from None
    if not math.isfinite(number) or abs(number) > maximum:
        raise ModelError(path, f"expected a finite number of at most {maximum:g}, got {shown(text)}")
    return number


def _network(params: dict, path: str, model: Model | None) -> NetworkChange:
    target = parse_target(params, path, model)
    spec = params
    spec_path = path
    if isinstance(params.get("network"), dict):  # the SDK's shape: network: {network: name, uplink: ...}
        spec, spec_path = params["network"], join(path, "network")
        name = _network_name(spec.get("network") or spec.get("name"), join(spec_path, "network"), model)
    else:
        name = _network_name(params.get("network"), join(path, "network"), model)
    up, down = directions(spec, spec_path, required=True)
    if model is not None:
        blueprint = model.blueprint(target.label)
        if blueprint is not None and all(a.network != name for a in blueprint.networks):
            raise ModelError(join(path, "network"), f"{shown(target.label)} is not on network {shown(name)}")
    return NetworkChange(target=target, network=name, uplink=up, downlink=down)


def _links(params: dict, path: str, model: Model | None) -> LinksChange:
    name = _network_name(params.get("network"), join(path, "network"), model)
    links_path = join(path, "links")
    raw_links = params.get("links")
    if not isinstance(raw_links, list) or not raw_links:
        raise ModelError(links_path, "expected a non-empty list of links")
    links = tuple(parse_link(item, join(links_path, i)) for i, item in enumerate(raw_links))
    if model is not None:
        members = {b.label for b in model.blueprints if any(a.network == name for a in b.networks)}
        for i, link in enumerate(links):
            for key, label in (("from_node", link.source), ("to_node", link.target)):
                if label not in members:
                    raise ModelError(join(join(links_path, i), key),
                                     f"{shown(label)} is not a label on network {shown(name)}")
    return LinksChange(network=name, links=links)


def _stress(params: dict, path: str, model: Model | None) -> Stress:
    target = parse_target(params, path, model)
    spec = params.get("action") if isinstance(params.get("action"), dict) else params
    spec_path = join(path, "action") if spec is not params else path
    loads = {}
    for key in ("cpu", "io", "vm"):
        if spec.get(key) not in (None, "", 0):
            loads[key] = parse_percent(spec[key], join(spec_path, key))
    vm_bytes = parse_size(spec["vm_bytes"], join(spec_path, "vm_bytes")) if spec.get("vm_bytes") else None
    if not loads and vm_bytes is None:
        raise ModelError(spec_path, "give at least one of cpu, io, vm (percent of the allocation) or vm_bytes")
    if vm_bytes is not None and "vm" not in loads:
        loads["vm"] = 100.0
    duration_path = join(spec_path, "duration")
    duration = parse_seconds(spec.get("duration", 60), duration_path)
    if duration <= 0 or duration > 24 * 3600:
        raise ModelError(duration_path, "must be between 1 second and 24 hours")
    return Stress(target=target, duration=duration, vm_bytes=vm_bytes, **loads)


def _command(params: dict, path: str, model: Model | None) -> Command:
    target = parse_target(params, path, model)
    spec = params.get("action") if isinstance(params.get("action"), dict) else params
    spec_path = join(path, "action") if spec is not params else path
    command = spec.get("command")
    if isinstance(command, list) and command and all(isinstance(x, str) for x in command):
        command = tuple(command)
    elif not isinstance(command, str) or not command.strip():
        raise ModelError(join(spec_path, "command"), "missing (a command line or a list of arguments)")
    else:
        try:
            shlex.split(command)
        except ValueError as error:  # "No closing quotation"
            raise ModelError(join(spec_path, "command"), f"cannot split {command[:60]!r} into words: {error}") from None
    timeout = None
    if spec.get("timeout") is not None:
        timeout = float(parse_count(spec["timeout"], join(spec_path, "timeout"), minimum=1))
        if timeout > MAX_COMMAND_TIMEOUT_S:
            raise ModelError(join(spec_path, "timeout"), f"at most {MAX_COMMAND_TIMEOUT_S:g} seconds, got {timeout:g}")
    wait = spec.get("wait", params.get("wait", False))
    return Command(target=target, command=command, wait=bool(wait), timeout=timeout)


def _link_state(up: bool):
    """An instance's cable on a network (instance_type, network), or a cable between two switches (switches)."""

    def parse(params: dict, path: str, model: Model | None) -> LinkState | SwitchLinkChange:
        if params.get("switches") is not None:
            return SwitchLinkChange(_switch_pair(params, path, model), up=up)
        target = parse_target(params, path, model)
        name = _network_name(params.get("network"), join(path, "network"), model)
        return LinkState(target=target, network=name, up=up)

    return parse


def _switch_pair(params: dict, path: str, model: Model | None) -> tuple[str, str]:
    value, where = params.get("switches"), join(path, "switches")
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(x, str) and x for x in value):
        raise ModelError(where, "expected the two switches a switch link joins, e.g. [s1, s2]")
    if model is not None:
        links = [link for network in model.networks.values() for link in network.switch_links]
        if not any({link.source, link.target} == set(value) for link in links):
            raise ModelError(where, f"no switch link joins {shown(value[0])} and {shown(value[1])}")
    return value[0], value[1]


def _switch_link(params: dict, path: str, model: Model | None) -> SwitchLinkChange:
    """{switches: [a, b], up, symmetric, forward (a -> b), backward (b -> a)}: a switch link's state and shaping."""
    pair = _switch_pair(params, path, model)
    both = parse_qos_patch(params["symmetric"], join(path, "symmetric")) if params.get("symmetric") else None
    patches = {}
    for key in ("forward", "backward"):
        given = parse_qos_patch(params[key], join(path, key)) if params.get(key) else None
        merged = {**(both.values() if both else {}), **(given.values() if given else {})}
        patches[key] = QoSPatch(**merged) if merged else None
    up = params.get("up")
    if up is not None and not isinstance(up, bool):
        raise ModelError(join(path, "up"), f"expected true or false, got {shown(up)}")
    if up is None and patches["forward"] is None and patches["backward"] is None:
        raise ModelError(path, "give up (true or false) and/or the shaping: symmetric, forward, backward")
    return SwitchLinkChange(pair, up=up, **patches)


def _partition(heal: bool):
    def parse(params: dict, path: str, model: Model | None) -> Partition:
        labels = []
        for key, fallback in (("from", "instance_type"), ("to", None)):
            value = params.get(key, params.get(fallback) if fallback else None)
            if not value:
                raise ModelError(join(path, key), "missing (a blueprint label)")
            if model is not None and model.blueprint(str(value)) is None:
                raise ModelError(join(path, key), f"unknown label {shown(value)}")
            labels.append(str(value))
        network = None
        if params.get("network"):
            network = _network_name(params["network"], join(path, "network"), model)
        return Partition(source=labels[0], target=labels[1], network=network, heal=heal)

    return parse


def _lifecycle(restart: bool):
    def parse(params: dict, path: str, model: Model | None) -> Lifecycle:
        return Lifecycle(target=parse_target(params, path, model), restart=restart)

    return parse


def _move(params: dict, path: str, model: Model | None) -> Move:
    target = parse_target(params, path, model)
    key = "to" if params.get("to") is not None else "network"
    to = _network_name(params.get(key), join(path, key), model)
    source = None
    if params.get("from") not in (None, ""):
        source = _network_name(params["from"], join(path, "from"), model)
        if source == to:
            raise ModelError(join(path, "from"), f"from and to are both {to!r}")
    overlap = 0.0
    if params.get("overlap") not in (None, ""):
        overlap = parse_seconds(params["overlap"], join(path, "overlap"))
        if overlap > MAX_OVERLAP_S:
            raise ModelError(join(path, "overlap"), f"at most {MAX_OVERLAP_S:g} seconds")
    return Move(target=target, to=to, source=source, overlap=overlap)


def _trace(params: dict, path: str, model: Model | None) -> TraceAction:
    """`command` and `name`, or an inline trace: network (+ instance_type, from_node/to_node or switches)
    and points."""
    command = str(params.get("command") or "start").lower()
    if command not in TRACE_COMMANDS:
        raise ModelError(join(path, "command"), f"unknown command {command!r} (use {', '.join(TRACE_COMMANDS)})")
    inline_keys = [key for key in ("points", "mahimahi", "file") if params.get(key) is not None]
    name = None
    if params.get("name") not in (None, ""):
        name = str(params["name"])
    if not inline_keys:
        if command == "start" and name is None:
            raise ModelError(join(path, "name"), "missing: the trace to start (or give points inline)")
        if name is not None and model is not None and model.trace(name) is None:
            known = ", ".join(t.name for t in model.traces) or "none"
            raise ModelError(join(path, "name"), f"unknown trace {name!r} (the model's: {known})")
        return TraceAction(command=command, name=name)
    if command != "start":
        raise ModelError(join(path, "command"), f"points come with start, not {command}")
    network = _network_name(params.get("network"), join(path, "network"), model)
    label = str(params.get("instance_type") or "") or None
    link = None
    if params.get("from_node") is not None or params.get("to_node") is not None:
        pair = []
        for key in ("from_node", "to_node"):
            pair.append(valid_name(params.get(key), join(path, key)))
        link = (pair[0], pair[1])
        if label is not None:
            raise ModelError(join(path, "instance_type"), "give a label or a link (from_node, to_node), not both")
    cable, flipped = None, False
    if params.get("switches") is not None:
        if label is not None or link is not None:
            raise ModelError(join(path, "switches"), "give switches, a label or a link (from_node, to_node): one")
        cable, flipped = _cable_on(network, _switch_pair(params, path, model), join(path, "switches"), model)
    if label is not None:
        label = valid_name(label, join(path, "instance_type"))
    for key, value in (("instance_type", label), ("from_node", link and link[0]), ("to_node", link and link[1])):
        if value is not None and model is not None:
            blueprint = model.blueprint(value)
            if blueprint is None:
                raise ModelError(join(path, key), f"unknown label {value!r}")
    default = network
    if cable is not None:
        default = f"{cable[0]}-{cable[1]}@{network}"
    elif link is not None:
        default = f"{link[0]}-{link[1]}@{network}"
    elif label is not None:
        default = f"{label}@{network}"
    spec_keys = {"points", "mahimahi", "file", "direction", "mode", "resolution", "loop", "duration", "name"}
    given = {k: v for k, v in params.items() if k in spec_keys}
    if flipped and given.get("direction") in ("uplink", "downlink"):  # [to, from]: its uplink is the cable's backward
        given["direction"] = "downlink" if given["direction"] == "uplink" else "uplink"
    spec = parse_trace_spec(given, path, default, None, allow_files=False)
    return TraceAction(command="start", name=spec.name,
                       inline=BoundTrace(spec, TraceTarget(network, label=label, link=link, switch_link=cable)))


def _cable_on(network: str, pair: tuple[str, str], path: str, model: Model | None) -> tuple[tuple[str, str], bool]:
    """The switch link of `network` joining `pair`, as the model declares it (from, to), and whether `pair`
    names it the other way round; without a model, `pair` as given."""
    if model is None:
        return pair, False
    for cable in model.networks[network].switch_links:
        if {cable.source, cable.target} == set(pair):
            return (cable.source, cable.target), cable.source != pair[0]
    raise ModelError(path, f"no switch link of network {shown(network)} joins {shown(pair[0])} and {shown(pair[1])}")


@dataclass(frozen=True)
class ActionKind:
    """One type of action: its name (the route /actions/<name>/ and a scenario's `type`), its
    parser, and the annotation it leaves (Fogify's names where Fogify has the action)."""

    name: str
    parse: Callable[[dict, str, Model | None], Any]
    annotation: str
    aliases: tuple[str, ...] = ()


# The one table of action types: the API, the scenarios and the runner read it.
ACTIONS: dict[str, ActionKind] = {kind.name: kind for kind in (
    ActionKind("horizontal_scaling", _horizontal, "H_SCALE",
               aliases=("scale-out", "scale_out", "scale-in", "scale_in")),  # the seed's forms
    ActionKind("vertical_scaling", _vertical, "V_SCALE"),
    ActionKind("network", _network, "NETWORK"),
    ActionKind("links", _links, "UPDATE_LINKS", aliases=("update_links",)),
    ActionKind("stress", _stress, "STRESS"),
    ActionKind("command", _command, "COMMAND"),
    ActionKind("link_down", _link_state(up=False), "LINK_DOWN"),
    ActionKind("link_up", _link_state(up=True), "LINK_UP"),
    ActionKind("switch_link", _switch_link, "SWITCH_LINK"),
    ActionKind("partition", _partition(heal=False), "PARTITION"),
    ActionKind("heal", _partition(heal=True), "HEAL"),
    ActionKind("crash", _lifecycle(restart=False), "CRASH"),
    ActionKind("restart", _lifecycle(restart=True), "RESTART"),
    ActionKind("move", _move, "MOVE"),
    ActionKind("trace", _trace, "TRACE"),
    ActionKind("noop", lambda params, path, model: Noop(), "NOOP"),
)}
ACTION_TYPES = frozenset(ACTIONS)
ALIASES = {alias: kind.name for kind in ACTIONS.values() for alias in kind.aliases}


def normalize(kind: str, params: dict) -> tuple[str, dict]:
    """An action type as written (any case, an alias) and its parameters, as the table names them.

    The seed's `scale-out`/`scale-in` carry the direction in the type and the
    count as `num-of-instances`; they become horizontal_scaling's `type` and
    `instances`. A type the table does not know is returned lowered, unchanged.
    """
    written = kind.lower()
    params = dict(params)
    if written in ("scale-in", "scale_in", "scale-out", "scale_out"):
        params.setdefault("type", "down" if written.endswith("in") else "up")
        if "num-of-instances" in params:
            params.setdefault("instances", params.pop("num-of-instances"))
    return ALIASES.get(written, written), params
