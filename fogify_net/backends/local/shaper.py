"""Keeps the kernel's shaping equal to the plan's, by applying only what changed.

Rates (and, with netem, delay, jitter and loss) are tc on both ends of each
link; without netem, loss is an nftables table on the bridges and delay is
the fogify-delayd delay line fed by NFQUEUE rules. Partitions and firewall
rules live in the same nftables table whatever the mechanism (on the ports'
ingress, a netdev table, when the switches are Open vSwitch).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from ...compile.netfilter import (
    CHAIN_DOWN,
    CHAIN_UP,
    iptables_delay_rules,
    iptables_jumps,
    nft_port_filters,
    nft_ruleset,
    nft_teardown,
)
from ...compile.plan import Plan
from ...compile.shaping import InterfaceShaping, interface_shaping, plan_shaping, switch_link_shaping
from ...compile.tc import class_peers, direction_commands, needs_qdisc, netem_ignores
from ...host.capabilities import NETEM, RATE_ONLY, USERSPACE
from ...host.delayline import DelayLine, DelayLineError
from ...host.delayqueues import DelayQueues
from ...host.distributions import install_tc_tables, remove_tc_tables
from ...host.fidelity import DelayQueue, LinkTarget
from ...host.kernel import (
    KernelError,
    iptables_delete_chain,
    iptables_ensure,
    iptables_remove,
    iptables_restore,
    nft_apply,
    run,
    tc_batch,
)
from ...model.schema import DISTRIBUTIONS

log = logging.getLogger(__name__)

QUEUE_BASE = 20000  # NFQUEUE numbers we use start here, clear of the low numbers other tools pick


class Shaper:
    """The applied shaping of one deployment."""

    def __init__(self, mechanism: str, run_dir: str, on_state: Callable[[str, str], None] | None = None,
                 port_filters: bool = False):
        """`port_filters`: partitions and firewall rules on the ports' ingress (Open vSwitch), not on the bridges."""
        self.mechanism = mechanism
        self.port_filters = port_filters
        self.kernel_delay = mechanism == NETEM
        self.applied: dict[str, InterfaceShaping] = {}
        self._nft = ""
        self._lock = threading.RLock()
        self.delayline = DelayLine(run_dir=run_dir, on_state=on_state) if mechanism == USERSPACE else None
        self.delay = DelayQueues(self.delayline, iptables_restore, QUEUE_BASE) if self.delayline else None
        self.tables: set[Path] = set()  # custom distributions' tables written for tc

    def start(self) -> None:
        if self.delayline is not None:
            self.delayline.start()
            iptables_restore(iptables_delay_rules({}))
            for table, chain, rule in iptables_jumps():
                iptables_ensure(table, chain, rule)

    def apply(self, plan: Plan, pids: dict[str, int], only: Collection[str] | None = None) -> None:
        """Bring the kernel to the plan's shaping; `pids` maps instance names to container pids.

        Instances missing from `pids` (crashed: their links went with their
        namespace) are left out; a restart installs their shaping afresh.
        With `only` (switch ports: instances' or switch links'), only those links' shaping is computed and
        changed, the rest stays as applied: a trace's step touches the links it
        drives and nothing else.
        """
        with self._lock:
            if only is None:
                desired = {port: s for port, s in plan_shaping(plan).items() if s.root or s.instance in pids}
                changed = desired
            else:
                changed = {}
                wanted = set(only)
                for instance in plan.instances:
                    for interface in instance.interfaces:
                        if interface.port in wanted and instance.name in pids:
                            changed[interface.port] = interface_shaping(plan, instance, interface)
                for link in plan.switch_links():
                    if link.source_port in wanted:
                        changed[link.source_port] = switch_link_shaping(link)
                desired = {port: s for port, s in self.applied.items() if port not in wanted}
                desired.update(changed)
            if self.kernel_delay:
                self._install_tables(plan, changed)
            self._apply_tc(plan, changed, pids)
            if self.delay is not None:
                self.delay.apply(desired, distributions=plan.distributions)
            if self.port_filters:
                ruleset = nft_port_filters(plan, list(desired))
            else:
                ruleset = nft_ruleset(plan, desired, loss=self.mechanism == USERSPACE)
            if ruleset != self._nft:
                nft_apply(ruleset)
                self._nft = ruleset
            self.applied = desired

    def _install_tables(self, plan: Plan, desired: dict[str, InterfaceShaping]) -> None:
        """netem reads a custom distribution's table from a file when tc names it: write those first."""
        names = {q.distribution for s in desired.values() for q in s.uplink.all() + s.downlink.all()}
        wanted = [plan.distributions[name] for name in sorted(names) if name not in DISTRIBUTIONS]
        self.tables.update(install_tc_tables(wanted))

    def forget(self, ports: list[str]) -> None:
        """These links were recreated (an instance restarted): their tc state is gone, reinstall it.

        With Open vSwitch the filters' hooks on these ports went with the old veths too (the kernel
        drops a netdev chain's hook when its device goes), so the next apply writes the table again.
        """
        with self._lock:
            for port in ports:
                self.applied.pop(port, None)
            if self.port_filters and ports:
                self._nft = ""

    def link_targets(self, plan: Plan, pids: dict[str, int]) -> list[LinkTarget]:
        """Where the HTB classes of every applied direction are: uplinks on the instance's own
        interface (in its namespace), downlinks on its switch port (here)."""
        with self._lock:
            applied = dict(self.applied)
        targets = []
        for port, s in applied.items():
            pid = pids.get(s.instance)
            network = plan.networks.get(s.network)
            if pid is None or network is None:
                continue
            for direction, device, where in (("uplink", s.device, pid), ("downlink", port, None)):
                shaping = getattr(s, direction)
                if needs_qdisc(shaping, self.kernel_delay):
                    peers = {minor: str(peer or "") for minor, peer in class_peers(shaping, network.subnet).items()}
                    targets.append(LinkTarget(s.instance, s.network, direction, where, device, peers))
        return targets

    def delay_readings(self, node: str) -> tuple[list[DelayQueue], list[str]]:
        """(every delay queue's counters, what a helper that is down leaves undelayed)."""
        if self.delay is None:
            return [], []
        with self._lock:
            applied = dict(self.applied)
        if not self.delayline.alive():
            return [], ["the delay line of every link (fogify-delayd is not running)"]
        try:
            return self.delay.readings(applied, node), []
        except DelayLineError as error:
            return [], [f"the delay line of every link (fogify-delayd: {error})"]

    def unshaped(self, plan: Plan) -> list[str]:
        """What the plan asks for that this mechanism cannot do: delay and loss when rate-only,
        delay correlation with netem (netem_ignores); empty with the user-space mechanism."""
        if self.mechanism not in (RATE_ONLY, NETEM):
            return []
        missing = []
        for s in plan_shaping(plan).values():
            for direction in ("uplink", "downlink"):
                for qos in getattr(s, direction).all():
                    if self.mechanism == NETEM:
                        what = netem_ignores(qos)
                    else:
                        what = qos.describe() if qos.needs_delay or qos.loss else None
                    if what:
                        missing.append(f"{s.instance} {s.network} {direction}: {what}")
                        break
        return missing

    def _apply_tc(self, plan: Plan, desired: dict[str, InterfaceShaping], pids: dict[str, int]) -> None:
        root: list[str] = []
        inside: dict[int, list[str]] = {}
        for port, s in desired.items():
            old = self.applied.get(port)
            subnet = plan.networks[s.network].subnet
            lines = direction_commands(s.device, old and old.uplink, s.uplink, subnet, "dst", self.kernel_delay)
            if s.root:
                root += lines
            elif lines:
                inside.setdefault(pids[s.instance], []).extend(lines)
            root += direction_commands(port, old and old.downlink, s.downlink, subnet, "src", self.kernel_delay)
        tc_batch(root)
        if len(inside) <= 2:
            for pid, lines in inside.items():
                tc_batch(lines, pid)
            return
        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(tc_batch, lines, pid) for pid, lines in inside.items()]:
                future.result()

    def stop(self) -> None:
        """Remove every rule and queue; the tc state goes away with the links."""
        with self._lock:
            errors = []
            for step in (self._stop_delay, lambda: run(["nft", "-f", "-"], nft_teardown(), check=False),
                         lambda: remove_tc_tables(self.tables)):
                try:
                    step()
                except (KernelError, OSError) as error:
                    errors.append(str(error))
            self.applied, self._nft, self.tables = {}, "", set()
            if errors:
                raise KernelError("; ".join(errors))

    def _stop_delay(self) -> None:
        if self.delay is None:
            return
        for table, chain, rule in iptables_jumps():
            iptables_remove(table, chain, rule)
        for chain in (CHAIN_UP, CHAIN_DOWN):
            iptables_delete_chain("mangle", chain)
        self.delayline.stop()
        self.delay.clear()
