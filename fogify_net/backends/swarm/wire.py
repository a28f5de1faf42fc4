"""The wire format between the Swarm backend (on the controller) and the node agents.

Both ends import this one module, so a field added or renamed here changes
the sender and the receiver together. Every body is JSON; each type has
`to_json()` for the sender and `from_json()` for the receiver, which raises
KeyError or ValueError (the agent's 400) on a malformed body.

Routes (all POST but /health/, answers are JSON):
  /health/               -> {node_id, hostname, tasks}
  /shape/    {tasks: [TaskShaping], filters: [Filter], distributions: {name: custom distribution}}
                                                -> {applied: {instance: {network: device}}}
  /samples/  {containers: {id: SampleRequest}}  -> {instance: {metric: value}}
  /fidelity/ FidelityRequest                   -> Readings (readings_to_json)
  /flows/    FlowsRequest                       -> {flows: [...]}
  /forget/   {containers: [id]}
  /link/     LinkRequest
  /exec/     ExecRequest                       -> {exit_code, output, timed_out} or {started}
  /resources/ ResourcesRequest
  /stress/   StressRequest                     -> {commands: [...]}   (DELETE: stop every stress)
  /events/   EventsRequest                     -> {epoch, seq, events: [TaskState]} after `seq` (waits for
                                                one), or {epoch, seq, states: [TaskState]}: every task of ours
                                                on the node, when the controller must look at them all
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network

from ...compile.netfilter import Filter
from ...compile.shaping import DirectionShaping, PeerShaping
from ...host.fidelity import DelayQueue, HostCpu, InstanceCpu, LinkQueue, Readings
from ...model.actions import Stress
from ...model.distributions import check_name, from_json, to_json
from ...model.schema import DISTRIBUTIONS, DelayDistribution, QoS

SWARM_PORTS = "veth*"  # the tasks' ports on an overlay network's bridge (br0), as Docker names them
_DOCKER_ID = re.compile(r"[0-9a-z]{10,64}")


def docker_id(value: object) -> str:
    """A Docker object id as sent (an overlay network's, a container's); anything else is a ValueError."""
    if not isinstance(value, str) or not _DOCKER_ID.fullmatch(value):
        raise ValueError(f"not a Docker id: {str(value)[:80]!r}")
    return value


def filter_to_json(rule: Filter) -> dict:
    return {"sources": [str(a) for a in rule.sources], "targets": [str(a) for a in rule.targets],
            "action": rule.action, "protocol": rule.protocol, "ports": list(rule.ports) if rule.ports else None}


def filter_from_json(raw: dict) -> Filter:
    """A Filter from its JSON; addresses, action, protocol and ports are checked (Filter's own checks),
    so nothing but these fields reaches the rule the agent renders."""
    if not (isinstance(raw, dict) and isinstance(raw.get("sources"), list) and isinstance(raw.get("targets"), list)):
        raise ValueError("a filter is {sources: [address], targets: [address], action, protocol, ports}")
    ports = raw.get("ports")
    if ports is not None and not isinstance(ports, list):
        raise ValueError("filter ports must be a list of two numbers")
    return Filter(tuple(IPv4Address(str(a)) for a in raw["sources"]),
                  tuple(IPv4Address(str(a)) for a in raw["targets"]),
                  str(raw.get("action")), raw.get("protocol"), tuple(ports) if ports is not None else None)


@dataclass(frozen=True)
class FlowsRequest:
    """Count the flows of these monitored subnets on these overlay networks' bridges (the agent renders
    the counting table itself, fogify_net.compile.flows.flow_ruleset_for)."""

    networks: tuple[str, ...]  # overlay network ids
    subnets: tuple[IPv4Network, ...]

    def to_json(self) -> dict:
        return {"networks": list(self.networks), "subnets": [str(s) for s in self.subnets]}

    @classmethod
    def from_json(cls, raw: dict) -> FlowsRequest:
        return cls(tuple(docker_id(n) for n in raw["networks"]), tuple(IPv4Network(str(s)) for s in raw["subnets"]))


def optional(raw: dict, key: str, kind: type):
    """raw[key] as `kind`, or None when absent or null."""
    return kind(raw[key]) if raw.get(key) is not None else None


def qos_to_json(qos: QoS) -> dict:
    return asdict(qos)


def direction_to_json(direction: DirectionShaping) -> dict:
    return {"default": qos_to_json(direction.default),
            "peers": [[str(p.peer), qos_to_json(p.qos)] for p in direction.peers]}


def direction_from_json(raw: dict) -> DirectionShaping:
    return DirectionShaping(QoS(**raw["default"]),
                            tuple(PeerShaping(IPv4Address(ip), QoS(**qos)) for ip, qos in raw.get("peers", [])))


def custom_names(tasks: list[TaskShaping]) -> set[str]:
    """The custom delay distributions these tasks' shaping names (their tables travel with them)."""
    return {q.distribution for t in tasks for i in t.interfaces for d in (i.uplink, i.downlink) for q in d.all()
            if q.distribution not in DISTRIBUTIONS}


def distributions_to_json(distributions: dict[str, DelayDistribution]) -> dict:
    return {name: to_json(d) for name, d in distributions.items()}


def distributions_from_json(raw: dict | None) -> dict[str, DelayDistribution]:
    """Custom distributions by name; names are checked as the API checks them, tables by `from_json`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(d, dict) for d in raw.values()):
        raise ValueError("distributions are {name: {name, mean_ms, std_ms, rho, samples, table}}")
    return {check_name(name, "distributions"): from_json(d) for name, d in raw.items()}


@dataclass(frozen=True)
class AttachmentShaping:
    """A task's wanted shaping on one overlay network."""

    network: str  # the model's name
    network_id: str  # the overlay network's Docker id (its namespace on the node holds the bridge)
    subnet: IPv4Network  # how the agent finds the task's interface on it
    uplink: DirectionShaping
    downlink: DirectionShaping
    senders_loss: tuple[tuple[str, float], ...] = ()  # (peer address, %): peers' uplink loss toward this task

    def to_json(self) -> dict:
        return {"network": self.network, "network_id": self.network_id, "subnet": str(self.subnet),
                "uplink": direction_to_json(self.uplink), "downlink": direction_to_json(self.downlink),
                "senders_loss": [[address, loss] for address, loss in self.senders_loss]}

    @classmethod
    def from_json(cls, raw: dict) -> AttachmentShaping:
        network_id = docker_id(raw["network_id"]) if raw.get("network_id") else ""
        return cls(str(raw["network"]), network_id, IPv4Network(raw["subnet"]),
                   direction_from_json(raw["uplink"]), direction_from_json(raw["downlink"]),
                   tuple((str(address), float(loss)) for address, loss in raw.get("senders_loss", [])))


@dataclass(frozen=True)
class TaskShaping:
    """Everything an agent installs for one task: its shaping on each of its networks."""

    container: str
    instance: str
    interfaces: tuple[AttachmentShaping, ...]

    def to_json(self) -> dict:
        return {"container": self.container, "instance": self.instance,
                "interfaces": [i.to_json() for i in self.interfaces]}

    @classmethod
    def from_json(cls, raw: dict) -> TaskShaping:
        return cls(docker_id(raw["container"]), str(raw["instance"]),
                   tuple(AttachmentShaping.from_json(i) for i in raw["interfaces"]))


@dataclass(frozen=True)
class SampleRequest:
    """What an agent needs to sample one task: its name, limits and networks (name -> subnet)."""

    instance: str
    cpus: float
    memory: int
    networks: dict[str, str]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> SampleRequest:
        return cls(str(raw["instance"]), float(raw.get("cpus") or 0), int(raw.get("memory") or 0),
                   {str(k): str(v) for k, v in raw.get("networks", {}).items()})


@dataclass(frozen=True)
class FidelityRequest:
    """What an agent reads for the fidelity monitor: its node's name as the controller knows it, and the
    tasks to read (as for samples)."""

    node: str
    containers: dict[str, SampleRequest]

    def to_json(self) -> dict:
        return {"node": self.node, "containers": {cid: want.to_json() for cid, want in self.containers.items()}}

    @classmethod
    def from_json(cls, raw: dict) -> FidelityRequest:
        return cls(str(raw["node"]), {docker_id(cid): SampleRequest.from_json(want)
                                      for cid, want in raw.get("containers", {}).items()})


def readings_to_json(readings: Readings) -> dict:
    return {"hosts": [asdict(h) for h in readings.hosts.values()],
            "instances": [asdict(i) for i in readings.instances.values()],
            "links": [asdict(link) for link in readings.links], "delays": [asdict(d) for d in readings.delays],
            "delay_lines_down": list(readings.delay_lines_down)}


def readings_from_json(raw: dict) -> Readings:
    hosts = [HostCpu(**{**h, "cores": tuple(tuple(core) for core in h["cores"])}) for h in raw.get("hosts", [])]
    instances = [InstanceCpu(**i) for i in raw.get("instances", [])]
    return Readings({h.node: h for h in hosts}, {i.name: i for i in instances},
                    [LinkQueue(**link) for link in raw.get("links", [])],
                    [DelayQueue(**{**d, "late_hist": tuple(d["late_hist"])}) for d in raw.get("delays", [])],
                    [str(down) for down in raw.get("delay_lines_down", [])])


@dataclass(frozen=True)
class LinkRequest:
    container: str
    subnet: str
    up: bool

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> LinkRequest:
        return cls(docker_id(raw["container"]), str(raw["subnet"]), bool(raw["up"]))


@dataclass(frozen=True)
class ExecRequest:
    container: str
    command: str | tuple[str, ...]
    wait: bool
    timeout: float | None

    def to_json(self) -> dict:
        command = self.command if isinstance(self.command, str) else list(self.command)
        return {"container": self.container, "command": command, "wait": self.wait, "timeout": self.timeout}

    @classmethod
    def from_json(cls, raw: dict) -> ExecRequest:
        command = raw["command"]
        return cls(docker_id(raw["container"]), command if isinstance(command, str) else tuple(map(str, command)),
                   bool(raw.get("wait")), optional(raw, "timeout", float))


@dataclass(frozen=True)
class ResourcesRequest:
    container: str
    cpu_quota: int | None
    cpu_period: int | None
    memory: int | None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> ResourcesRequest:
        return cls(docker_id(raw["container"]), optional(raw, "cpu_quota", int), optional(raw, "cpu_period", int),
                   optional(raw, "memory", int))


@dataclass(frozen=True)
class StressRequest:
    """A stress run in one task; `cpus` is the task's allocation, the stress's percentages are of it."""

    container: str
    cpus: float
    stress: Stress

    def to_json(self) -> dict:
        s = self.stress
        return {"container": self.container, "cpus": self.cpus, "duration": s.duration, "cpu": s.cpu,
                "io": s.io, "vm": s.vm, "vm_bytes": s.vm_bytes}

    @classmethod
    def from_json(cls, raw: dict) -> StressRequest:
        stress = Stress(target=None, duration=float(raw["duration"]), cpu=optional(raw, "cpu", float),
                        io=optional(raw, "io", float), vm=optional(raw, "vm", float),
                        vm_bytes=optional(raw, "vm_bytes", int))
        return cls(docker_id(raw["container"]), float(raw["cpus"]), stress)


EVENTS_WAIT_MAX = 30.0  # seconds an /events/ request may wait for news (the agent's channel timeout is 60)
_EPOCH = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class EventsRequest:
    """What happened to this node's tasks after event `after` of the agent's run `epoch`; with neither
    (or an epoch that is not the agent's: it restarted) the agent answers the state of every task."""

    after: int | None
    epoch: str | None
    wait: float  # seconds to wait for an event when there is none yet

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> EventsRequest:
        epoch = optional(raw, "epoch", str)
        if epoch is not None and not _EPOCH.fullmatch(epoch):
            raise ValueError(f"not an agent epoch: {epoch[:80]!r}")
        after = optional(raw, "after", int)
        if after is not None and after < 0:
            raise ValueError("after must be a number of events, >= 0")
        wait = float(raw.get("wait") or 0)
        if not 0 <= wait <= EVENTS_WAIT_MAX:
            raise ValueError(f"wait must be within 0..{EVENTS_WAIT_MAX:g} s")
        return cls(after, epoch, wait)


@dataclass(frozen=True)
class TaskState:
    """One task container of fogify-net on a node as its daemon describes it now: running, or not and why
    (the local backend's words: `was OOM-killed`, `stopped (exit code N[, error])`)."""

    container: str
    instance: str  # <service>.<slot>, the instance it holds
    task: str  # Swarm's task id
    running: bool
    reason: str  # why it does not run; "" when it does

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> TaskState:
        return cls(docker_id(raw["container"]), str(raw["instance"]), str(raw["task"]), bool(raw["running"]),
                   str(raw.get("reason") or ""))
