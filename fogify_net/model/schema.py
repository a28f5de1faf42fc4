"""The validated model: plain frozen dataclasses, no behaviour beyond small derivations.

Units are already normalised here: rates in bits/s, times in seconds, loss in
percent, memory in bytes, clocks in MHz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")  # built in (netem's tables, fogify-delayd's)
TABLE_SCALE = 8192  # a delay table entry of 8192 is one standard deviation (netem's NETEM_DIST_SCALE)
TRACE_MODES = ("step", "linear")
TRACE_DIRECTIONS = ("bidirectional", "uplink", "downlink")


@dataclass(frozen=True)
class QoS:
    """Shaping of one direction of a host's attachment to a network.

    uplink = what the host sends (its egress), downlink = what it receives.
    """

    rate: int | None = None  # bits/s; None means not limited
    delay: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, netem's "deviation"
    correlation: float = 0.0  # percent, correlation of successive jitter samples
    distribution: str = "uniform"
    loss: float = 0.0  # percent
    queue: int | None = None  # packets the direction's queue holds (Mininet's max_queue_size); None: sized by rate

    def patched(self, patch: QoSPatch | None) -> QoS:
        """This QoS with the fields the patch sets replaced."""
        if patch is None:
            return self
        return replace(self, **patch.values())

    @property
    def shaped(self) -> bool:
        return self != QoS()

    @property
    def needs_delay(self) -> bool:
        return self.delay > 0 or self.jitter > 0

    def describe(self) -> str:
        """Short human text such as '10Mbit/s 25ms±5ms 0.05% loss'."""
        from .units import format_duration, format_rate

        parts = [format_rate(self.rate) if self.rate else "unlimited"]
        if self.delay or self.jitter:
            text = format_duration(self.delay)
            if self.jitter:
                text += f"±{format_duration(self.jitter)}"
                if self.distribution != "uniform":
                    text += f" {self.distribution}"
            parts.append(text)
        if self.loss:
            parts.append(f"{self.loss:.3g}% loss")
        if self.queue:
            parts.append(f"queue {self.queue}")
        return " ".join(parts)


@dataclass(frozen=True)
class DelayDistribution:
    """A custom delay distribution made from a trace of delays (e.g. ping times), under its own name.

    `table` is the trace's inverse cumulative distribution, normalised to mean 0
    and standard deviation 1 and scaled by TABLE_SCALE, in netem's table format:
    a delay is `delay + jitter * table[k] / TABLE_SCALE` for a uniformly drawn k.
    The trace's own mean and deviation (ms) are what a latency that names the
    distribution gets when it gives no delay or deviation of its own.
    """

    name: str
    mean_ms: float
    std_ms: float
    rho: float  # lag-1 autocorrelation of the trace
    samples: int
    table: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class QoSPatch:
    """Some fields of a QoS, as given in a model or an action; None = not given."""

    rate: int | None = None
    delay: float | None = None
    jitter: float | None = None
    correlation: float | None = None
    distribution: str | None = None
    loss: float | None = None
    queue: int | None = None

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def split_per_direction(self) -> QoSPatch:
        """Share of one direction when a value describes the whole host-to-host path.

        A packet crosses the sender's uplink and the receiver's downlink, so
        delay is halved, the jitter variance is halved (two independent
        samples add up to the declared deviation) and the loss probability is
        split so that two independent drops give the declared loss.
        Rate and correlation apply to each direction unchanged.
        """
        return replace(
            self,
            delay=None if self.delay is None else self.delay / 2,
            jitter=None if self.jitter is None else self.jitter / math.sqrt(2),
            loss=None if self.loss is None else 100 * (1 - math.sqrt(1 - self.loss / 100)),
        )

    def __bool__(self) -> bool:
        return bool(self.values())


@dataclass(frozen=True)
class TracePoint:
    """A trace's values from `time` (seconds after its start) on; fields it does not give keep theirs."""

    time: float
    values: QoSPatch  # rate, delay, jitter, loss


@dataclass(frozen=True)
class Trace:
    """Link properties over time: points stepped or interpolated at `resolution`, once or looping.

    `duration` is one pass (the loop's period); a trace that does not loop
    ends there and its last values stay.
    """

    points: tuple[TracePoint, ...]
    duration: float
    mode: str = "step"  # step or linear
    resolution: float = 0.1  # seconds between two applications at most
    loop: bool = True
    source: str = "inline"  # the file it came from, for messages and the status


@dataclass(frozen=True)
class TraceSpec:
    """A trace as a network, a blueprint's network entry or a links rule gives it.

    `direction` says what the trace's values describe: the host-to-host path
    (`bidirectional`, split per direction as the model's bidirectional is) or
    one direction as it is. `autostart` traces start with the deployment; the
    others wait for a `trace` action (a scenario's, say).
    """

    name: str
    trace: Trace
    direction: str = "bidirectional"
    autostart: bool = True


@dataclass(frozen=True)
class TraceTarget:
    """Where a trace applies: every attachment to `network`, one label's, one links rule's pair, or one
    cable between two of the network's switches."""

    network: str
    label: str | None = None  # a blueprint's entry: only this label's instances
    link: tuple[str, str] | None = None  # a links rule: (from_node, to_node)
    switch_link: tuple[str, str] | None = None  # a switch link: (from, to); uplink values go from -> to

    def describe(self) -> str:
        if self.switch_link is not None:
            return f"switch link {self.switch_link[0]}-{self.switch_link[1]} on {self.network}"
        if self.link is not None:
            return f"link {self.link[0]}->{self.link[1]} on {self.network}"
        if self.label is not None:
            return f"{self.label} on {self.network}"
        return f"network {self.network}"


@dataclass(frozen=True)
class BoundTrace:
    """A trace and the place it applies to."""

    spec: TraceSpec
    target: TraceTarget

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class LinkRule:
    """A per-pair override: traffic between `source` and `target` labels on one network.

    The patches apply on top of the network's shaping of `source`: uplink to
    packets it sends to `target`, downlink to packets it receives from it.
    With `bidirectional` the same patches apply to `target` towards `source`.
    """

    source: str
    target: str
    uplink: QoSPatch
    downlink: QoSPatch
    bidirectional: bool = False
    traces: tuple[TraceSpec, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class FirewallRule:
    """Fogify's firewall_rules entry: accept or drop traffic from one label to another."""

    source: str
    target: str
    action: str  # "accept" or "drop"
    protocol: str | None = None  # tcp, udp, icmp
    from_port: int | None = None
    to_port: int | None = None


@dataclass(frozen=True)
class SwitchLink:
    """A cable between two switches of one network, shaped on each end's egress (Mininet's TCLink).

    `forward` is what travels from `source` to `target`, `backward` the other way.
    """

    source: str
    target: str
    forward: QoS = QoS()
    backward: QoS = QoS()
    traces: tuple[TraceSpec, ...] = ()  # uplink values drive `forward`, downlink values `backward`

    @property
    def name(self) -> str:
        return f"{self.source}-{self.target}"


@dataclass(frozen=True)
class Network:
    """A layer-2 segment with one subnet: one switch by default, or several joined by switch links."""

    name: str
    uplink: QoS = QoS()
    downlink: QoS = QoS()
    links: tuple[LinkRule, ...] = ()
    capacity: int | None = None
    subnet: IPv4Network | None = None
    firewall_rules: tuple[FirewallRule, ...] = ()
    packet_level_monitoring: bool = False
    traces: tuple[TraceSpec, ...] = ()
    switches: tuple[str, ...] = ()  # empty: one switch named after the network
    switch_links: tuple[SwitchLink, ...] = ()

    @property
    def switch_names(self) -> tuple[str, ...]:
        """The switches this network is made of; the first is where instances attach by default."""
        return self.switches or (self.name,)


@dataclass(frozen=True)
class NodeProfile:
    """A node's CPU and memory. CPUs are cores x clock_mhz over the host's clock, or `cpus` of this
    machine exactly; with neither, the whole machine. Memory None: no limit."""

    name: str
    cores: int | None
    clock_mhz: float | None
    memory: int | None  # bytes
    cpus: float | None = None
    cpu_shares: int | None = None  # Docker's relative CPU weight
    cpuset: str | None = None  # CPUs the node may run on, e.g. "0,1"


@dataclass(frozen=True)
class Volume:
    source: str  # absolute host path, a named volume, or "" for an anonymous volume
    target: str
    read_only: bool = False

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")


@dataclass(frozen=True)
class PublishedPort:
    """A compose `ports` entry: port `target` (TCP or UDP) of an instance, reachable from this machine at
    host_ip:published.

    `published` None: a free host port chosen at deploy, one for every replica
    (compose's bare "80"); a fixed port is published for the blueprint's first
    instance only (model/ports.py says why).
    """

    target: int
    published: int | None = None
    host_ip: str = "127.0.0.1"
    protocol: str = "tcp"

    def describe(self, bound: int | None = None) -> str:
        """'127.0.0.1:8080->80' ('...->5683/udp'), with the port bound at deploy when the model left it open."""
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        port = bound if bound is not None else self.published
        suffix = "" if self.protocol == "tcp" else f"/{self.protocol}"
        return f"{host}:{port if port is not None else '*'}->{self.target}{suffix}"


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    environment: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    command: tuple[str, ...] | str | None = None
    entrypoint: tuple[str, ...] | str | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    cap_add: tuple[str, ...] = ()
    privileged: bool = False
    host_access: tuple[tuple[str, str], ...] = ()  # (field, why) of what reaches into the host (compose.py)
    ports: tuple[PublishedPort, ...] = ()  # published on this machine (model/ports.py)
    tmpfs: tuple[tuple[str, str], ...] = ()  # (path in the container, mount options such as "size=64m")
    security_opt: tuple[str, ...] = ()  # Docker's, as compose writes them ("seccomp=unconfined")


@dataclass(frozen=True)
class Attachment:
    """A blueprint's place on one network: by reference, with a static ip, or with an inline override."""

    network: str
    ip: IPv4Address | None = None
    override: Network | None = None
    traces: tuple[TraceSpec, ...] = ()  # this blueprint's own traces on the network
    switch: str | None = None  # which of the network's switches (default: its first)
    interface: str | None = None  # the interface's name in the container (default: eth<k>)
    unnumbered: bool = False  # no address on this interface (a Mininet port without an ip)


@dataclass(frozen=True)
class Route:
    """A static route of an instance: to `destination` (None: the default route) via a gateway or an interface."""

    destination: IPv4Network | None
    via: IPv4Address | None = None
    device: str | None = None

    def describe(self) -> str:
        text = "default" if self.destination is None else str(self.destination)
        if self.via is not None:
            text += f" via {self.via}"
        if self.device is not None:
            text += f" dev {self.device}"
        return text


@dataclass(frozen=True)
class Blueprint:
    label: str
    node: str
    service: str
    replicas: int
    networks: tuple[Attachment, ...]
    placement: tuple[tuple[str, str], ...] = ()
    forwarding: bool = False  # forwards IPv4 between its networks (a router)
    routes: tuple[Route, ...] = ()
    single: bool = False  # one instance named by the label alone (d1, not d1.1), as Mininet names hosts


@dataclass(frozen=True)
class ScenarioAction:
    position: int
    time: float  # seconds to wait before this action, after the previous one
    instance_type: str
    instances: int | None
    type: str  # normalised action type, e.g. "network", "horizontal_scaling", "noop"
    parameters: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Scenario:
    """Timed actions. `error` is set when an action cannot run (e.g. names a label that does not exist):
    the topology still deploys, and running this scenario is refused with that message."""

    name: str
    actions: tuple[ScenarioAction, ...]
    error: str | None = None

    @property
    def duration(self) -> float:
        return sum(action.time for action in self.actions)


@dataclass(frozen=True)
class Model:
    services: dict[str, Service]
    nodes: dict[str, NodeProfile]
    networks: dict[str, Network]
    blueprints: tuple[Blueprint, ...]
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    traces: tuple[BoundTrace, ...] = ()  # every trace the model declares, where it applies
    distributions: dict[str, DelayDistribution] = field(default_factory=dict)  # custom ones known at parse time

    def trace(self, name: str) -> BoundTrace | None:
        return next((t for t in self.traces if t.name == name), None)

    def blueprint(self, label: str) -> Blueprint | None:
        return next((b for b in self.blueprints if b.label == label), None)

    def network_of(self, blueprint: Blueprint, network: str) -> Network:
        """The network as this blueprint sees it: its inline override, else the shared definition."""
        for attachment in blueprint.networks:
            if attachment.network == network and attachment.override is not None:
                return attachment.override
        return self.networks[network]

    def _overrides(self, network: str) -> list[Network]:
        return [a.override for b in self.blueprints for a in b.networks
                if a.network == network and a.override is not None]

    def links_of(self, network: str) -> tuple[LinkRule, ...]:
        """Every per-pair link of `network`: its own, then those of blueprints' inline overrides of it.

        An override's links name its blueprint (the parser checks) and act as if
        written on the network; coming later, they win over the network's for the same pair.
        """
        return self.networks[network].links + tuple(r for o in self._overrides(network) for r in o.links)

    def firewall_rules_of(self, network: str) -> tuple[FirewallRule, ...]:
        """Every firewall rule of `network`, in the order they are checked: overrides' rules first
        (a blueprint's own rule wins where the network's would also match), then the network's."""
        own = tuple(r for o in self._overrides(network) for r in o.firewall_rules)
        return own + self.networks[network].firewall_rules
