"""tc commands for one direction of one link: HTB for rate, a netem or FIFO leaf per class.

Layout on a device: root HTB `1:`, default class `1:1` for traffic to or
from any peer, one class `1:<m>` per peer with its own shaping, selected by a
u32 filter with the stable handle `800::<m>`. Every leaf qdisc has the
handle `<m + 0x10>:`. With netem, ARP has a class of its own, `1:fff`, that
drops as the default class does but does not delay: as on the user-space path
(whose delay line queues IPv4 only). Otherwise a round trip of 3 s or more
never resolves a neighbour (3 probes, 1 s apart, then the entry fails), and
every first packet to a peer waits one extra round trip. Commands are computed as a difference between what is
installed and what is wanted, so a rate change is a `class replace` of the
live class: the queue and the flows stay, and no packet passes unshaped.

The output is `tc -batch` input (no leading `tc`), one command a line.
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address, IPv4Network

from ..model.schema import DISTRIBUTIONS, DelayDistribution, QoS
from .naming import netem_distribution
from .shaping import DirectionShaping

UNLIMITED = 100 * 10**9  # bit/s: the rate of a class that only exists to carry a leaf or a filter
QUEUE_TIME = 0.1  # seconds of traffic the leaf FIFO holds at the class rate, like a modest router buffer
MIN_QUEUE = 100  # packets. Below ~100, TCP Small Queues keep more than the leaf holds at a sender's own
# uplink; the local drops then collapse TCP (measured: 4 Mbit/s with 64 KB gave 0.58 Mbit/s)
MTU = 1514
ARP_MINOR = 0xFFF  # peers' minors are 2..0xffe (_minor_ids)


def _minor_ids(peers: list[IPv4Address], subnet: IPv4Network) -> dict[IPv4Address, int]:
    """A stable class minor per peer: derived from its offset in the subnet, probing on collisions."""
    ids: dict[IPv4Address, int] = {}
    used: set[int] = set()
    for peer in sorted(peers):
        minor = 2 + (int(peer) - int(subnet.network_address)) % 0xFFD
        while minor in used:
            minor = 2 + (minor - 1) % 0xFFD
        used.add(minor)
        ids[peer] = minor
    return ids


def needs_qdisc(direction: DirectionShaping | None, kernel_delay: bool) -> bool:
    """Whether this direction needs HTB at all: a rate, per-peer classes, or (with netem) delay or loss."""
    if direction is None:
        return False
    if direction.peers:
        return True
    qos = direction.default
    return qos.rate is not None or qos.queue is not None or (kernel_delay and (qos.needs_delay or qos.loss > 0))


def _class(dev: str, minor: int, qos: QoS) -> str:
    rate = qos.rate or UNLIMITED
    burst = min(max(15000, rate // 8 // 1000), 4 * 1024 * 1024)  # 1 ms of traffic, at least 10 packets
    quantum = min(max(MTU, rate // 8 // 10), 200000)
    return (
        f"class replace dev {dev} parent 1: classid 1:{minor:x} htb rate {rate}bit ceil {rate}bit "
        f"burst {burst} cburst {burst} quantum {quantum}"
    )


def queue_limit(rate: int | None, queue: int | None = None) -> int:
    """Packets the leaf FIFO holds: the declared queue, else QUEUE_TIME of traffic at the class rate,
    never less than MIN_QUEUE."""
    if queue:
        return queue
    return max(MIN_QUEUE, math.ceil((rate or UNLIMITED) / 8 * QUEUE_TIME / MTU))


def leaf_spec(qos: QoS, kernel_delay: bool) -> str:
    """The leaf qdisc of a class: netem when the kernel does delay and loss, else a packet FIFO."""
    if kernel_delay and (qos.needs_delay or qos.loss > 0):
        parts = ["netem"]
        if qos.needs_delay:
            parts.append(f"delay {round(qos.delay * 1e6)}us")
            if qos.jitter:
                parts.append(f"{round(qos.jitter * 1e6)}us")
                if qos.correlation:
                    parts.append(f"{qos.correlation:g}%")
                if qos.distribution != "uniform":
                    builtin = qos.distribution in DISTRIBUTIONS
                    parts.append(f"distribution {netem_distribution(qos.distribution, builtin)}")
        if qos.loss > 0:
            parts.append(f"loss {qos.loss:.6g}%")
        rate_pps = (qos.rate or 10**9) / 8 / MTU
        held = rate_pps * (qos.delay + 4 * qos.jitter) * 1.5
        parts.append(f"limit {qos.queue or max(1000, math.ceil(held))}")
        return " ".join(parts)
    return f"pfifo limit {queue_limit(qos.rate, qos.queue)}"


def arp_qos(default: QoS) -> QoS:
    """What ARP gets with netem: the default class's loss, no delay, no rate."""
    return QoS(loss=default.loss)


def netem_ignores(qos: QoS) -> str | None:
    """What of `qos` a stock kernel's netem takes but does not do, said for the user; None when nothing.

    Delay correlation: sch_netem correlates its 32-bit random numbers and then takes them
    modulo the jitter range (or the distribution table's size), which undoes the
    correlation for any jitter below about 2 s (measured on Debian's 6.1: lag-1
    autocorrelation 0 for 75% declared). The user-space delay line applies it.
    """
    if qos.jitter and qos.correlation:
        return (f"delay correlation {qos.correlation:g}% (sch_netem takes each sample modulo the jitter "
                "range, which undoes it; --shaping userspace applies it)")
    return None


def _classes(direction: DirectionShaping, subnet: IPv4Network) -> dict[int, tuple[QoS, IPv4Address | None]]:
    ids = _minor_ids([p.peer for p in direction.peers], subnet)
    classes: dict[int, tuple[QoS, IPv4Address | None]] = {1: (direction.default, None)}
    for peer in direction.peers:
        classes[ids[peer.peer]] = (peer.qos, peer.peer)
    return classes


def class_peers(direction: DirectionShaping, subnet: IPv4Network) -> dict[int, IPv4Address | None]:
    """Minor of each class `direction_commands` makes -> the peer it shapes (None: the default class)."""
    return {minor: peer for minor, (_, peer) in _classes(direction, subnet).items()}


def _arp_commands(dev: str, old: DirectionShaping | None, new: DirectionShaping) -> list[str]:
    """ARP's class, leaf and filter on a fresh root (`old` None), else its leaf when the loss changed."""
    leaf = leaf_spec(arp_qos(new.default), kernel_delay=True)
    if old is not None:
        if leaf_spec(arp_qos(old.default), kernel_delay=True) == leaf:
            return []
        return [f"qdisc replace dev {dev} parent 1:{ARP_MINOR:x} handle {ARP_MINOR + 0x10:x}: {leaf}"]
    return [
        _class(dev, ARP_MINOR, arp_qos(new.default)),
        f"qdisc replace dev {dev} parent 1:{ARP_MINOR:x} handle {ARP_MINOR + 0x10:x}: {leaf}",
        f"filter add dev {dev} parent 1: protocol arp prio 2 u32 match u32 0 0 flowid 1:{ARP_MINOR:x}",
    ]


def direction_commands(
    dev: str,
    old: DirectionShaping | None,
    new: DirectionShaping | None,
    subnet: IPv4Network,
    match: str,
    kernel_delay: bool,
) -> list[str]:
    """Commands that take `dev` from shaping `old` to `new`.

    `match` is "dst" on an uplink (peers are destinations) and "src" on a
    downlink (peers are sources). `old` None means nothing is installed.
    """
    had, wants = needs_qdisc(old, kernel_delay), needs_qdisc(new, kernel_delay)
    if not wants:
        return [f"qdisc del dev {dev} root"] if had else []
    lines = [] if had else [f"qdisc replace dev {dev} root handle 1: htb default 1"]
    before = _classes(old, subnet) if had else {}
    after = _classes(new, subnet)
    for minor, (_, peer) in before.items():
        if minor not in after or after[minor][1] != peer:
            if peer is not None:
                lines.append(f"filter del dev {dev} parent 1: protocol ip prio 1 handle 800::{minor:x} u32")
            lines.append(f"class del dev {dev} classid 1:{minor:x}")
    for minor, (qos, peer) in after.items():
        previous = before.get(minor)
        fresh = previous is None or previous[1] != peer
        if fresh or previous[0].rate != qos.rate:
            lines.append(_class(dev, minor, qos))
        leaf = leaf_spec(qos, kernel_delay)
        if fresh or leaf_spec(previous[0], kernel_delay) != leaf:
            lines.append(f"qdisc replace dev {dev} parent 1:{minor:x} handle {minor + 0x10:x}: {leaf}")
        if fresh and peer is not None:
            lines.append(
                f"filter replace dev {dev} parent 1: protocol ip prio 1 handle 800::{minor:x} "
                f"u32 match ip {match} {peer}/32 flowid 1:{minor:x}"
            )
    if kernel_delay:
        lines += _arp_commands(dev, old if had else None, new)
    return lines


def distribution_file(distribution: DelayDistribution) -> str:
    """A custom distribution's table as tc reads it from `<its lib dir>/<netem name>.dist`.

    The format (iproute2's tc/q_netem.c get_distribution): lines starting with
    '#' are comments, every other line holds whitespace-separated integers; we
    write 8 a line, as netem/maketable.c does.
    """
    d = distribution
    lines = [f"# fogify-net delay distribution {d.name!r}: {d.samples} samples, mean {d.mean_ms:.6f} ms, "
             f"standard deviation {d.std_ms:.6f} ms, lag-1 correlation {d.rho:.6f}"]
    lines += [" ".join(str(v) for v in d.table[i:i + 8]) for i in range(0, len(d.table), 8)]
    return "\n".join(lines) + "\n"
