"""The wire format between the Swarm backend (on the controller) and the node agents.

Both ends import this one module, so a field added or renamed here changes
the sender and the receiver together. Every body is JSON; each type has
`to_json()` for the sender and `from_json()` for the receiver, which raises
KeyError or ValueError (the agent's 400) on a malformed body.

Routes (all POST but /health/, answers are JSON):
  /health/               -> {node_id, hostname, tasks}
  /shape/    {tasks: [TaskShaping], filters: [nft rule]} -> {applied: {instance: {network: device}}}
  /samples/  {containers: {id: SampleRequest}}  -> {instance: {metric: value}}
  /flows/    {networks: [overlay id], ruleset}  -> {flows: [...]}
  /forget/   {containers: [id]}
  /link/     LinkRequest
  /exec/     ExecRequest                       -> {exit_code, output, timed_out} or {started}
  /resources/ ResourcesRequest
  /stress/   StressRequest                     -> {commands: [...]}   (DELETE: stop every stress)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network

from ...compile.shaping import DirectionShaping, PeerShaping
from ...model.actions import Stress
from ...model.schema import QoS


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
        return cls(str(raw["network"]), str(raw.get("network_id") or ""), IPv4Network(raw["subnet"]),
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
        return cls(str(raw["container"]), str(raw["instance"]),
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
class LinkRequest:
    container: str
    subnet: str
    up: bool

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> LinkRequest:
        return cls(str(raw["container"]), str(raw["subnet"]), bool(raw["up"]))


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
        return cls(str(raw["container"]), command if isinstance(command, str) else tuple(map(str, command)),
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
        return cls(str(raw["container"]), optional(raw, "cpu_quota", int), optional(raw, "cpu_period", int),
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
        return cls(str(raw["container"]), float(raw["cpus"]), stress)
