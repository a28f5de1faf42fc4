"""The queues of one delay line and the NFQUEUE rules that feed them, kept equal to the wanted shaping.

One per delay line: the local backend's (root namespace, all bridges) and each
Swarm node's per overlay network (that network's namespace). Only changes are
applied: a queue is configured when its delay changes, the rules are restored
when their text changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..compile.netfilter import DelaySlot, delay_slots, iptables_delay_rules
from ..compile.shaping import InterfaceShaping
from ..model.schema import DISTRIBUTIONS, DelayDistribution, QoS
from .delayline import DelayLine
from .fidelity import DelayQueue


def custom_table(name: str, distributions: Mapping[str, DelayDistribution] | None) -> tuple[int, ...] | None:
    """The table of a custom distribution by name; None for a built-in one. A missing one is our fault."""
    if name in DISTRIBUTIONS:
        return None
    if not distributions or name not in distributions:
        raise LookupError(f"the shaping names delay distribution {name!r} but its table was not given")
    return distributions[name].table


class DelayQueues:
    """Slot -> queue number and each queue's delay, on `line`; `restore` runs iptables-restore --noflush text.

    The rules carry --queue-bypass on both backends: while the helper is down
    (a crash, a restart, a helper that cannot start) packets pass undelayed
    instead of being dropped. Fail open, and flagged: the deployment reports
    `degraded` and annotates DEGRADED ... RECOVERED around the window, so an
    analysis can leave it out; without bypass a dead helper would cut every
    delayed link, a partition the experiment never asked for, and a helper
    that cannot start would cut them for good.
    """

    def __init__(self, line: DelayLine, restore: Callable[[str], None], first_queue: int):
        self.line = line
        self._restore = restore
        self.queues: dict[DelaySlot, int] = {}
        self._config: dict[int, QoS] = {}
        self._free: list[int] = []
        self._next = first_queue
        self._rules = ""

    def apply(self, shaping: Mapping[str, InterfaceShaping], jumps: bool = False,
              distributions: Mapping[str, DelayDistribution] | None = None) -> None:
        """Queues first, then the rules that feed them; queues no rule feeds any more go last.

        `jumps` adds the rules that lead into our chains (for a namespace where
        nothing else would add them). `distributions` holds the tables of the
        custom distributions the shaping names; a queue samples its own copy.
        """
        slots = delay_slots(shaping)
        wanted = {slot: qos for slot, qos in slots.items() if qos is not None}
        for slot, qos in wanted.items():
            queue = self.queues.get(slot)
            if queue is None:
                queue = self.queues[slot] = self._take()
            if self._config.get(queue) != qos:
                self.line.set_queue(queue, qos.delay * 1000, qos.jitter * 1000, qos.correlation, qos.distribution,
                                    custom_table(qos.distribution, distributions))
                self._config[queue] = qos
        rules = iptables_delay_rules({slot: None if qos is None else self.queues[slot] for slot, qos in slots.items()},
                                     jumps=jumps, bypass=True)
        if rules != self._rules:
            self._restore(rules)
            self._rules = rules
        for slot in [s for s in self.queues if s not in wanted]:
            queue = self.queues.pop(slot)
            self.line.del_queue(queue)
            self._config.pop(queue, None)
            self._free.append(queue)

    def readings(self, shaping: Mapping[str, InterfaceShaping], node: str) -> list[DelayQueue]:
        """Each bound queue's counters from the helper, named by what it delays (the peer by its address).

        `shaping` maps ports to their wanted shaping (what `apply` was given).
        Raises DelayLineError when the helper does not answer.
        """
        stats = self.line.stats()
        found = []
        for slot, queue in sorted(self.queues.items(), key=lambda item: item[1]):
            wanted, counted, qos = shaping.get(slot.port), stats.get(queue), self._config.get(queue)
            if wanted is None or counted is None:
                continue
            found.append(DelayQueue(wanted.instance, wanted.network, slot.direction, str(slot.peer or ""), node,
                                    queue, qos.delay * 1000 if qos else 0.0, counted.pkts, counted.released,
                                    counted.dropped + counted.overbudget, counted.held, counted.late_hist))
        return found

    def clear(self) -> None:
        """Forget every queue and rule (the line stopped, the chains are gone)."""
        self.queues.clear()
        self._config.clear()
        self._rules = ""

    def _take(self) -> int:
        if self._free:
            return self._free.pop()
        self._next += 1
        return self._next - 1
