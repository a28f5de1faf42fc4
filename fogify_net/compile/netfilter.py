"""Rules in the root namespace, on the bridges: loss, partitions, firewall rules, delay queues.

Loss is dropped on the receive path (a bridge hook), never on the sender's
output, where the sender would see an error instead of a lost packet
(machine.md §5.1). Delay without netem is a user-space delay line fed by
NFQUEUE: the uplink of a port is queued in mangle PREROUTING, its downlink in
mangle POSTROUTING, so a packet meets its sender's and its receiver's delay in
two different hooks (an NFQUEUE verdict ends the traversal of one hook).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from ..model.schema import QoS
from .plan import Plan
from .shaping import DirectionShaping, InterfaceShaping

NFT_TABLE = "fogify_net"
CHAIN_UP = "FOGIFY_NET_UP"
CHAIN_DOWN = "FOGIFY_NET_DOWN"
COMMENT = "fogify-net"
LOSS_SCALE = 1_000_000  # numgen range: loss resolution of 0.0001 %


# --- nftables: loss, partitions, firewall -------------------------------------------------


def loss_rule(qos: QoS, match: str = "") -> str:
    threshold = round(qos.loss / 100 * LOSS_SCALE)
    return f"{match}numgen random mod {LOSS_SCALE} < {threshold} drop" if threshold else ""


def loss_chain(direction: DirectionShaping, peer_field: str) -> list[str]:
    """Rules of one port's loss chain: peer exceptions first, then the default."""
    rules = []
    for peer in direction.peers:
        match = f"ip {peer_field} {peer.peer} "
        if rule := loss_rule(peer.qos, match):
            rules.append(rule)
        rules.append(f"{match}return")
    if rule := loss_rule(direction.default):
        rules.append(rule)
    return rules


def has_loss(direction: DirectionShaping) -> bool:
    return any(q.loss > 0 for q in direction.all())


def _address_set(addresses: tuple[IPv4Address, ...]) -> str:
    return "{ " + ", ".join(str(a) for a in sorted(addresses)) + " }"


PROTOCOLS = ("tcp", "udp", "icmp")
ACTIONS = ("drop", "accept")


@dataclass(frozen=True)
class Filter:
    """One partition or firewall rule as data: packets from `sources` to `targets` (protocol and
    destination ports optional) get `action`. The Swarm agents receive these, never rule text,
    and render them themselves (`render`), so a request cannot smuggle nft syntax."""

    sources: tuple[IPv4Address, ...]
    targets: tuple[IPv4Address, ...]
    action: str  # drop or accept
    protocol: str | None = None
    ports: tuple[int, int] | None = None  # destination ports, low..high

    def __post_init__(self) -> None:
        if not self.sources or not self.targets:
            raise ValueError("a filter needs sources and targets")
        if not all(isinstance(a, IPv4Address) for a in self.sources + self.targets):
            raise ValueError("filter addresses must be IPv4 addresses")
        if self.action not in ACTIONS:
            raise ValueError(f"filter action must be one of {', '.join(ACTIONS)}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ValueError(f"filter protocol must be one of {', '.join(PROTOCOLS)}")
        if self.ports is not None and not (len(self.ports) == 2 and all(
                isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 65535 for p in self.ports)
                and self.ports[0] <= self.ports[1]):
            raise ValueError("filter ports must be two numbers 0..65535, low first")

    def render(self) -> str:
        text = f"ip saddr {_address_set(self.sources)} ip daddr {_address_set(self.targets)} "
        if self.protocol:
            text += f"meta l4proto {self.protocol} "
        if self.ports is not None:
            low, high = self.ports
            text += f"th dport {low}-{high} " if low != high else f"th dport {low} "
        return text + self.action


def _addresses(plan: Plan, label: str, network: str) -> tuple[IPv4Address, ...]:
    """The addresses of `label`'s instances on `network` (unnumbered interfaces have none)."""
    return tuple(i.interface(network).ip for i in plan.instances_of(label)
                 if i.interface(network) is not None and i.interface(network).ip is not None)


def filters(plan: Plan) -> list[Filter]:
    """Partitions (drop both ways), then each network's firewall rules in the order they are checked
    (blueprints' overrides' rules before the network's own, Model.firewall_rules_of)."""
    found = []
    for source, target, network in sorted(plan.partitions, key=str):
        for net in [network] if network else sorted(plan.networks):
            a = _addresses(plan, source, net)
            b = _addresses(plan, target, net)
            if a and b:
                found.append(Filter(a, b, "drop"))
                found.append(Filter(b, a, "drop"))
    for name in plan.networks:
        for rule in plan.model.firewall_rules_of(name):
            a = _addresses(plan, rule.source, name)
            b = _addresses(plan, rule.target, name)
            if not a or not b:
                continue
            ports = None
            if rule.from_port is not None or rule.to_port is not None:
                ports = (rule.from_port or rule.to_port, rule.to_port or rule.from_port)
            found.append(Filter(a, b, rule.action, rule.protocol or None, ports))
    return found


def filter_rules(plan: Plan) -> list[str]:
    """The plan's `filters` as nft rule text."""
    return [f.render() for f in filters(plan)]


def nft_ruleset(plan: Plan, shaping: dict[str, InterfaceShaping], loss: bool) -> str:
    """The whole `bridge fogify_net` table as one `nft -f` transaction (atomic replace).

    `loss` is False when netem does loss in tc; the table then only filters.
    """
    lines = [
        f"table bridge {NFT_TABLE}",
        f"delete table bridge {NFT_TABLE}",
        f"table bridge {NFT_TABLE} {{",
        "  chain filter {",
        "    type filter hook forward priority -10; policy accept;",
    ]
    lines += [f"    {rule}" for rule in filter_rules(plan)]
    lines.append("  }")
    for hook, direction, iface, peer_field in (
        ("prerouting", "uplink", "iifname", "daddr"),
        ("forward", "downlink", "oifname", "saddr"),
    ):
        ports = {port: getattr(s, direction) for port, s in sorted(shaping.items())}
        ports = {port: d for port, d in ports.items() if loss and has_loss(d)}
        for port, d in ports.items():
            lines.append(f"  chain {direction}_{port} {{")
            lines += [f"    {rule}" for rule in loss_chain(d, peer_field)]
            lines.append("  }")
        lines.append(f"  chain {direction}_loss {{")
        lines.append(f"    type filter hook {hook} priority 0; policy accept;")
        if ports:
            entries = ", ".join(f'"{port}" : jump {direction}_{port}' for port in ports)
            lines.append(f"    {iface} vmap {{ {entries} }}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def nft_port_filters(plan: Plan, ports: list[str]) -> str:
    """With Open vSwitch: the `netdev fogify_net` table, the plan's filters on every switch port's ingress.

    OVS's datapath takes frames before bridge netfilter sees them, so partitions and
    firewall rules filter where a frame enters the switch instead: the same rules,
    met once per packet as on a bridge's forward hook. No filters, no table.
    """
    lines = [f"table netdev {NFT_TABLE}", f"delete table netdev {NFT_TABLE}"]
    rules = filter_rules(plan)
    if rules and ports:
        devices = ", ".join(f'"{port}"' for port in sorted(ports))
        lines += [f"table netdev {NFT_TABLE} {{", "  chain filter {",
                  f"    type filter hook ingress devices = {{ {devices} }} priority -10; policy accept;"]
        lines += [f"    {rule}" for rule in rules]
        lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def nft_teardown() -> str:
    """Both of our shaping tables (bridge: Linux bridges; netdev: Open vSwitch ports), gone or not there."""
    return "".join(f"table {family} {NFT_TABLE}\ndelete table {family} {NFT_TABLE}\n"
                   for family in ("bridge", "netdev"))


# --- iptables NFQUEUE: the user-space delay line --------------------------------------------


@dataclass(frozen=True)
class DelaySlot:
    """One queue of the delay line: a port, a direction, and optionally one peer."""

    port: str
    direction: str  # "uplink" or "downlink"
    peer: IPv4Address | None


def delay_slots(shaping: dict[str, InterfaceShaping]) -> dict[DelaySlot, QoS | None]:
    """Where packets must go through the delay line, and with what delay.

    None marks a peer that needs no delay while its port's default does: a
    RETURN rule keeps it out of the default queue.
    """
    slots: dict[DelaySlot, QoS | None] = {}
    for port, s in shaping.items():
        for direction in ("uplink", "downlink"):
            d: DirectionShaping = getattr(s, direction)
            for peer in d.peers:
                if peer.qos.needs_delay:
                    slots[DelaySlot(port, direction, peer.peer)] = peer.qos
                elif d.default.needs_delay:
                    slots[DelaySlot(port, direction, peer.peer)] = None
            if d.default.needs_delay:
                slots[DelaySlot(port, direction, None)] = d.default
    return slots


def iptables_delay_rules(queues: dict[DelaySlot, int | None], jumps: bool = False, bypass: bool = False) -> str:
    """`iptables-restore --noflush` input that rewrites our two mangle chains.

    `queues` maps each slot to its queue number (None: RETURN). Peer rules come
    before their port's default rule, since the first matching rule wins.
    `jumps` appends the rules that lead into the chains (once per namespace);
    `bypass` lets packets through undelayed while no helper listens.
    """
    lines = ["*mangle", f":{CHAIN_UP} - [0:0]", f":{CHAIN_DOWN} - [0:0]", f"-F {CHAIN_UP}", f"-F {CHAIN_DOWN}"]
    ordered = sorted(queues.items(), key=lambda kv: (kv[0].port, kv[0].direction, kv[0].peer is None, str(kv[0].peer)))
    for slot, queue in ordered:
        chain, side, peer_flag = (CHAIN_UP, "--physdev-in", "-d") if slot.direction == "uplink" else (
            CHAIN_DOWN, "--physdev-out", "-s")
        rule = f"-A {chain} -m physdev {side} {slot.port}"
        if slot.peer is not None:
            rule += f" {peer_flag} {slot.peer}/32"
        rule += " -j RETURN" if queue is None else f" -j NFQUEUE --queue-num {queue}" + " --queue-bypass" * bypass
        lines.append(rule)
    if jumps:
        lines += [f"-A {chain} {rule}" for _, chain, rule in iptables_jumps()]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def iptables_jumps() -> list[tuple[str, str, str]]:
    """(table, chain, rule) that send bridged packets into our delay chains."""
    return [
        ("mangle", "PREROUTING", f"-m comment --comment {COMMENT} -j {CHAIN_UP}"),
        ("mangle", "POSTROUTING", f"-m comment --comment {COMMENT} -j {CHAIN_DOWN}"),
    ]


def delay_rules_teardown(saved: str) -> str | None:
    """`iptables-restore --noflush` input that removes exactly our delay rules from a namespace's mangle
    table, given its `iptables-save -t mangle`: every rule that jumps into our chains (as many copies
    as there are), then our chains; None when there are none. Other rules are not touched.

    For what an earlier run left where a new one starts (a Swarm agent killed or restarted: its
    helpers ended with it, the rules that fed them stay, and the new run's jumps would come twice).
    """
    ours = (CHAIN_UP, CHAIN_DOWN)
    jumps, chains = [], []
    for line in saved.splitlines():
        words = line.split()
        if line.startswith(":") and line[1:].split(" ", 1)[0] in ours:
            chains.append(line[1:].split(" ", 1)[0])
        elif len(words) > 2 and words[0] == "-A" and words[1] not in ours and words[-2:-1] == ["-j"] \
                and words[-1] in ours:
            jumps.append("-D " + line[3:])
    if not jumps and not chains:
        return None
    lines = ["*mangle", *jumps, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains), "COMMIT"]
    return "\n".join(lines) + "\n"


def bridge_rules(bridge_prefix: str = "fgn") -> list[tuple[str, str, str]]:
    """(table, chain, rule) every deployment needs on its bridges.

    Docker sets FORWARD to DROP with bridge netfilter on, so our bridged frames
    need an ACCEPT. And conntrack must not track them: packets of a new flow
    held together in the delay line would each get an unconfirmed entry, and
    all but the first would be dropped as clashes when released.
    """
    bridges = f"{bridge_prefix}+"
    return [
        ("filter", "FORWARD", f"-i {bridges} -o {bridges} -m comment --comment {COMMENT} -j ACCEPT"),
        ("raw", "PREROUTING", f"-i {bridges} -m comment --comment {COMMENT} -j CT --notrack"),
    ]
