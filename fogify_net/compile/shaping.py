"""What each link should do to traffic, per direction and per peer.

An instance's attachment to a network is one veth pair: the uplink (what the
instance sends) is shaped on the container's end, the downlink (what it
receives) on the switch port. Per-pair `links` rules override the network's
shaping towards particular peers. A cable between two switches is a veth pair
too, seen from its source switch: its port there carries the forward
direction as a downlink (leaving the source bridge) and the backward one as an
uplink (entering it), whose rate is shaped on the other end, in the root
namespace. So every link is one InterfaceShaping keyed by a bridge port, and
one set of tc, nftables and delay-line rules serves all of them. This module
computes that desired state; the tc/nft/iptables modules turn it into commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from ..model.schema import QoS
from .plan import InstancePlan, InterfacePlan, Plan, SwitchLinkPlan


@dataclass(frozen=True)
class PeerShaping:
    peer: IPv4Address
    qos: QoS


@dataclass(frozen=True)
class DirectionShaping:
    """One direction of one attachment: a default and per-peer exceptions (sorted by address)."""

    default: QoS
    peers: tuple[PeerShaping, ...] = ()

    def all(self) -> list[QoS]:
        return [self.default] + [p.qos for p in self.peers]

    def toward(self, peer: IPv4Address) -> QoS:
        """What applies to traffic with `peer`: its exception, else the default."""
        return next((p.qos for p in self.peers if p.peer == peer), self.default)


@dataclass(frozen=True)
class InterfaceShaping:
    instance: str  # or the switch link's name
    network: str
    device: str  # container end, holds the uplink
    port: str  # switch end, holds the downlink
    uplink: DirectionShaping
    downlink: DirectionShaping
    root: bool = False  # a switch link: `device` is in the root namespace too


def interface_shaping(plan: Plan, instance: InstancePlan, interface: InterfacePlan) -> InterfaceShaping:
    """Shaping of one attachment, with the network's link rules resolved to peer addresses."""
    up: dict[IPv4Address, QoS] = {}
    down: dict[IPv4Address, QoS] = {}
    rules = plan.networks[interface.network].links
    # Mirrored rules first, so that a rule naming this instance's label as its source wins.
    for rule in [r for r in rules if r.bidirectional and r.target == instance.label] + [
        r for r in rules if r.source == instance.label
    ]:
        peer_label = rule.source if rule.source != instance.label else rule.target
        for peer in plan.instances_of(peer_label):
            peer_interface = peer.interface(interface.network)
            if peer is instance or peer_interface is None or peer_interface.ip is None:
                continue
            up[peer_interface.ip] = interface.uplink.patched(rule.uplink)
            down[peer_interface.ip] = interface.downlink.patched(rule.downlink)
    return InterfaceShaping(
        instance=instance.name,
        network=interface.network,
        device=interface.name,
        port=interface.port,
        uplink=_direction(interface.uplink, up),
        downlink=_direction(interface.downlink, down),
    )


def _direction(default: QoS, peers: dict[IPv4Address, QoS]) -> DirectionShaping:
    return DirectionShaping(default, tuple(PeerShaping(ip, qos) for ip, qos in sorted(peers.items())))


def switch_link_shaping(link: SwitchLinkPlan) -> InterfaceShaping:
    """A cable between switches, from its source switch's side (see the module docstring)."""
    return InterfaceShaping(instance=link.name, network=link.network, device=link.target_port,
                            port=link.source_port, uplink=DirectionShaping(link.backward),
                            downlink=DirectionShaping(link.forward), root=True)


def plan_shaping(plan: Plan) -> dict[str, InterfaceShaping]:
    """Every attachment's and every switch link's shaping, keyed by switch port name."""
    shaping = {
        interface.port: interface_shaping(plan, instance, interface)
        for instance in plan.instances
        for interface in instance.interfaces
    }
    for link in plan.switch_links():
        shaping[link.source_port] = switch_link_shaping(link)
    return shaping
