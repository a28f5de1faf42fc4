"""The plan: every instance, address, name and limit the emulation will create.

A plan is plain data made from a model without touching the machine; the
emulation layer turns it into containers, links and rules. Runtime actions
change the plan (more replicas, new shaping) and the emulation applies the
difference, so the plan is always the desired state of the running network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ..errors import Conflict
from ..model.errors import ModelError, join
from ..model.schema import DelayDistribution, LinkRule, Model, NodeProfile, PublishedPort, QoS, Route, Service
from .addressing import DEFAULT_POOL, AddressBook, assign_subnets, static_addresses
from .naming import bridge_name, container_name, host_node_name, instance_name, port_name, switch_link_ports
from .resources import CPU_PERIOD, MIN_QUOTA, HostFacts, cpu_quota, node_cpus


@dataclass
class SwitchLinkPlan:
    """A cable between two switches of a network: a veth pair whose ends are ports of the two bridges.

    `forward` (source -> target) is shaped on the source end's egress, i.e.
    the downlink of `source_port`; `backward` on the target end's egress.
    """

    name: str  # <source>-<target>
    network: str
    source: str
    target: str
    source_port: str
    target_port: str
    forward: QoS
    backward: QoS
    up: bool = True

    def joins(self, a: str, b: str) -> bool:
        return {a, b} == {self.source, self.target}


@dataclass
class NetworkPlan:
    name: str
    bridge: str  # the bridge of the first switch, where instances attach by default
    subnet: IPv4Network
    links: list[LinkRule]  # per-pair overrides, changed by `links` actions
    addresses: AddressBook = field(repr=False)
    switches: dict[str, str] = field(default_factory=dict)  # switch name -> bridge; one entry unless multi-switch
    switch_links: list[SwitchLinkPlan] = field(default_factory=list)


@dataclass
class InterfacePlan:
    network: str
    name: str  # inside the container, e.g. eth0
    port: str  # the switch-side end in the root namespace
    ip: IPv4Address | None  # None: unnumbered
    prefixlen: int
    uplink: QoS  # this instance's current shaping on this network (network actions change it)
    downlink: QoS
    up: bool = True
    switch: str = ""  # the switch (bridge) of the network it plugs into

    @property
    def cidr(self) -> str | None:
        return None if self.ip is None else f"{self.ip}/{self.prefixlen}"

    @property
    def mac(self) -> str:
        """A locally administered MAC made from the address (02:66:<IPv4 bytes>).

        It stays the same when the instance restarts or its slot is reused, so
        peers' neighbour caches stay right; a random MAC left them sending to the
        old one for up to half a minute. An unnumbered interface's comes from its port name.
        """
        if self.ip is None:
            return "02:67:" + ":".join(f"{b:02x}" for b in hashlib.sha1(self.port.encode()).digest()[:4])
        return "02:66:" + ":".join(f"{byte:02x}" for byte in self.ip.packed)


@dataclass
class PortPlan:
    """A TCP port the instance publishes on this machine; `bound` is the host port in use, once published
    (the model's, or the free one chosen when it left the port open)."""

    spec: PublishedPort
    bound: int | None = None

    @property
    def host_ip(self) -> str:
        return self.spec.host_ip

    @property
    def target(self) -> int:
        return self.spec.target

    def describe(self) -> str:
        return self.spec.describe(self.bound)


@dataclass
class InstancePlan:
    name: str  # <label>.<slot>
    label: str
    slot: int
    index: int  # unique for the deployment's life; names kernel objects
    service: Service
    node: NodeProfile
    interfaces: list[InterfacePlan]
    cpu_quota: int
    memory: int  # bytes
    cpu_period: int = CPU_PERIOD
    forwarding: bool = False  # a router: forwards IPv4 between its interfaces
    routes: tuple[Route, ...] = ()
    ports: list[PortPlan] = field(default_factory=list)  # published on this machine

    @property
    def container(self) -> str:
        return container_name(self.name, self.label)

    @property
    def host_node(self) -> str:
        return host_node_name(self.index)

    @property
    def hostname(self) -> str:
        return self.name

    @property
    def cpus(self) -> float:
        return self.cpu_quota / self.cpu_period

    def interface(self, network: str) -> InterfacePlan | None:
        return next((i for i in self.interfaces if i.network == network), None)

    def environment(self) -> dict[str, str]:
        env = dict(self.service.environment)
        env.update(FOGIFY_NAME=self.label, FOGIFY_SERVICE_NAME=self.service.name, FOGIFY_INSTANCE=self.name)
        return env


@dataclass
class Plan:
    model: Model
    host: HostFacts
    networks: dict[str, NetworkPlan]
    instances: list[InstancePlan] = field(default_factory=list)
    partitions: set[tuple[str, str, str | None]] = field(default_factory=set)
    next_index: int = 1
    warnings: list[str] = field(default_factory=list)
    distributions: dict[str, DelayDistribution] = field(default_factory=dict)  # custom ones the shaping may name

    def instance(self, name: str) -> InstancePlan | None:
        return next((i for i in self.instances if i.name == name), None)

    def instances_of(self, label: str) -> list[InstancePlan]:
        return sorted((i for i in self.instances if i.label == label), key=lambda i: i.slot)

    def members(self, network: str) -> list[InstancePlan]:
        return [i for i in self.instances if i.interface(network) is not None]

    def switch_links(self) -> list[SwitchLinkPlan]:
        return [link for network in self.networks.values() for link in network.switch_links]

    def switch_link(self, a: str, b: str) -> SwitchLinkPlan | None:
        """The cable between switches `a` and `b`, in either order."""
        return next((link for link in self.switch_links() if link.joins(a, b)), None)

    def switch_network(self, switch: str) -> str | None:
        """The network a switch belongs to."""
        return next((n.name for n in self.networks.values() if switch in n.switches), None)

    def replicas(self) -> dict[str, int]:
        counts = {b.label: 0 for b in self.model.blueprints}
        for instance in self.instances:
            counts[instance.label] += 1
        return counts


def compile_model(model: Model, host: HostFacts, pool: IPv4Network = DEFAULT_POOL) -> Plan:
    """The plan for deploying `model` on a machine described by `host`."""
    subnets = assign_subnets(model, pool)
    statics = static_addresses(model)
    taken: set[str] = set()
    networks = {}
    for name, subnet in subnets.items():
        definition = model.networks[name]
        switches = {}
        for switch in definition.switch_names:
            switches[switch] = bridge_name(switch, taken)
            taken.add(switches[switch])
        reserved = [address for address, _ in statics[name]]
        addresses = AddressBook(subnet, reserved)
        networks[name] = NetworkPlan(name, switches[definition.switch_names[0]], subnet, list(model.links_of(name)),
                                     addresses, switches)
    plan = Plan(model=model, host=host, networks=networks, distributions=dict(model.distributions))
    index = 1
    for network in networks.values():
        for link in model.networks[network.name].switch_links:
            source_port, target_port = switch_link_ports(index)
            index += 1
            network.switch_links.append(SwitchLinkPlan(link.name, network.name, link.source, link.target,
                                                       source_port, target_port, link.forward, link.backward))
    _check_routes(plan)
    for blueprint in model.blueprints:
        add_instances(plan, blueprint.label, blueprint.replicas)
    plan.warnings = capacity_warnings(plan)
    return plan


def _check_routes(plan: Plan) -> None:
    """A gateway must be on one of the instance's own networks, or the kernel refuses the route."""
    for i, blueprint in enumerate(plan.model.blueprints):
        subnets = {a.network: plan.networks[a.network].subnet for a in blueprint.networks}
        for j, route in enumerate(blueprint.routes):
            if route.via is not None and not any(route.via in subnet for subnet in subnets.values()):
                mine = ", ".join(f"{name} {subnet}" for name, subnet in subnets.items()) or "none"
                raise ModelError(join(join(join(join("x-fogify", "topology"), i), "routes"), j) + ".via",
                                 f"gateway {route.via} is on none of {blueprint.label}'s networks ({mine})")


def capacity_warnings(plan: Plan) -> list[str]:
    """Where the model asks for more than this machine has: limits then cannot all be met at once."""
    warnings = []
    for blueprint in plan.model.blueprints:
        instances = plan.instances_of(blueprint.label)
        if instances and instances[0].cpus > plan.host.cpus:
            warnings.append(f"{blueprint.label}: a node of {instances[0].cpus:.2f} CPUs on a machine with "
                            f"{plan.host.cpus}; it gets at most {plan.host.cpus}")
        wanted = node_cpus(instances[0].node, plan.host) if instances else None
        if wanted is not None and wanted * CPU_PERIOD < MIN_QUOTA:
            warnings.append(f"{blueprint.label}: a node of {wanted:.4f} CPUs is below the kernel's smallest "
                            f"quota; it gets {MIN_QUOTA / CPU_PERIOD:g} CPUs")
    memory = sum(i.memory for i in plan.instances if i.node.memory is not None)
    if memory > plan.host.memory:
        warnings.append(f"the nodes' memory adds up to {memory / 2**30:.1f} GiB; this machine has "
                        f"{plan.host.memory / 2**30:.1f} GiB")
    return warnings


def check_room(plan: Plan, label: str, count: int) -> None:
    """Refuse `count` more replicas of `label` that one of its networks cannot take, before anything changes.

    A network's `capacity` is the most instances it may hold (crashed ones keep
    their place); its subnet has only so many free addresses.
    """
    blueprint = plan.model.blueprint(label)
    if blueprint is None:
        raise KeyError(label)
    for attachment in blueprint.networks:
        name = attachment.network
        capacity = plan.model.networks[name].capacity
        members = len(plan.members(name))
        if capacity is not None and members + count > capacity:
            raise Conflict(f"network {name!r} has capacity {capacity} and holds {members} instances: "
                           f"{count} more of {label!r} would make {members + count}")
        free = plan.networks[name].addresses.free()
        if count > free:
            raise Conflict(f"network {name!r} (subnet {plan.networks[name].subnet}) has {free} free addresses: "
                           f"{count} more of {label!r} do not fit")


def add_instances(plan: Plan, label: str, count: int) -> list[InstancePlan]:
    """Plan `count` more replicas of `label` in the next free slots, all or none.

    check_room refuses at once what a network's capacity or free addresses
    cannot take (409, naming the network). Should anything still fail part way,
    the replicas planned so far are taken out again, so a refused scale-out
    leaves the plan as it was.
    """
    check_room(plan, label, count)
    next_index = plan.next_index
    added: list[InstancePlan] = []
    try:
        _add_instances(plan, label, count, added)
    except BaseException:
        remove_instances(plan, label, len(added))
        plan.next_index = next_index
        raise
    return added


def _add_instances(plan: Plan, label: str, count: int, added: list[InstancePlan]) -> None:
    blueprint = plan.model.blueprint(label)
    node = plan.model.nodes[blueprint.node]
    quota = cpu_quota(node_cpus(node, plan.host))
    slots = {i.slot for i in plan.instances_of(label)}
    for _ in range(count):
        slot = max(slots, default=0) + 1
        slots.add(slot)
        index = plan.next_index
        plan.next_index += 1
        interfaces: list[InterfacePlan] = []
        try:
            for k, attachment in enumerate(blueprint.networks):
                network = plan.networks[attachment.network]
                definition = plan.model.network_of(blueprint, attachment.network)
                static = attachment.ip if slot == 1 else None
                interfaces.append(
                    InterfacePlan(
                        network=attachment.network,
                        name=attachment.interface or f"eth{k}",
                        port=port_name(index, k),
                        ip=None if attachment.unnumbered else network.addresses.take(static),
                        prefixlen=network.subnet.prefixlen,
                        uplink=definition.uplink,
                        downlink=definition.downlink,
                        switch=attachment.switch or plan.model.networks[attachment.network].switch_names[0],
                    )
                )
        except BaseException:  # this replica's addresses so far go back to their subnets
            for interface in interfaces:
                if interface.ip is not None:
                    plan.networks[interface.network].addresses.release(interface.ip)
            raise
        instance = InstancePlan(
            name=instance_name(label, slot, blueprint.single),
            label=label,
            slot=slot,
            index=index,
            service=plan.model.services[blueprint.service],
            node=node,
            interfaces=interfaces,
            cpu_quota=quota,
            memory=node.memory if node.memory is not None else plan.host.memory,
            forwarding=blueprint.forwarding,
            routes=blueprint.routes,
            ports=published_ports(plan.model.services[blueprint.service], slot),
        )
        plan.instances.append(instance)
        added.append(instance)


def published_ports(service: Service, slot: int) -> list[PortPlan]:
    """The ports replica `slot` publishes: every open one (a free host port each), the fixed ones on the
    first replica only (a host port exists once; model/ports.py), as a static address is."""
    return [PortPlan(port) for port in service.ports if port.published is None or slot == 1]


def attach(plan: Plan, instance: InstancePlan, network: str, position: int | None = None,
           ip: IPv4Address | None = None) -> InterfacePlan:
    """A new interface of `instance` on `network`: the next free address, the network's shaping as this
    instance's blueprint sees it, and the lowest interface number it does not use (so a make-before-break
    move, which holds both attachments for a while, never clashes on names).

    It goes at `position` in the instance's list (default: last); the first
    network an instance shares with a peer gives the names without a network.
    `ip` takes that address instead (a failed move going back).
    """
    names, ports = {i.name for i in instance.interfaces}, {i.port for i in instance.interfaces}
    number = next(n for n in range(len(names) + 1)
                  if f"eth{n}" not in names and port_name(instance.index, n) not in ports)
    blueprint = plan.model.blueprint(instance.label)
    definition = plan.model.network_of(blueprint, network) if blueprint else plan.model.networks[network]
    declared = next((a for a in blueprint.networks if a.network == network), None) if blueprint else None
    book = plan.networks[network]
    interface = InterfacePlan(
        network=network,
        name=f"eth{number}",
        port=port_name(instance.index, number),
        ip=book.addresses.take(ip),
        prefixlen=book.subnet.prefixlen,
        uplink=definition.uplink,
        downlink=definition.downlink,
        switch=(declared and declared.switch) or plan.model.networks[network].switch_names[0],
    )
    instance.interfaces.insert(len(instance.interfaces) if position is None else position, interface)
    return interface


def detach(plan: Plan, instance: InstancePlan, network: str) -> InterfacePlan:
    """Take `instance`'s interface on `network` out of the plan and free its address."""
    interface = instance.interface(network)
    if interface is None:
        raise KeyError(f"{instance.name} is not on {network}")
    instance.interfaces.remove(interface)
    plan.networks[network].addresses.release(interface.ip)
    return interface


def remove_instances(plan: Plan, label: str, count: int) -> list[InstancePlan]:
    """Take the `count` highest slots of `label` out of the plan and free their addresses."""
    victims = plan.instances_of(label)[-count:] if count > 0 else []
    for instance in victims:
        plan.instances.remove(instance)
        for interface in instance.interfaces:
            if interface.ip is not None:
                plan.networks[interface.network].addresses.release(interface.ip)
    return victims
