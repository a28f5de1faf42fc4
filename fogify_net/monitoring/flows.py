"""Packet-level monitoring: the flow counters of the bridges, read every period into the store.

The kernel counts (see fogify_net.compile.flows); this thread asks the backend
for the counters once a period (the local bridges' set, or every Swarm node's),
turns them into what each flow sent since the last read,
names both ends from the plan as it is then (scaled-out instances included),
and stores one row per flow and period, as Fogify aggregated its captures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..compile.flows import Flow, monitored
from ..compile.plan import Plan
from .store import MetricStore

if TYPE_CHECKING:
    from ..backends.base import Backend

log = logging.getLogger(__name__)

PERIOD_S = 5.0


class FlowRecorder:
    """Every `period` seconds, stores the traffic of each flow the backend `counting()` counts (None: none)."""

    def __init__(self, counting: Callable[[], Backend | None], store: MetricStore, period: float = PERIOD_S):
        self.counting = counting
        self.store = store
        self.period = period
        self._last: dict[Flow, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fogify-flows", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def reset(self) -> None:
        """Forget the last counters: a new deployment's table starts from zero."""
        with self._lock:
            self._last = {}

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.read_once()
            except Exception:  # a store or nft failure must not end the recording
                log.exception("reading the flow counters failed")

    def read_once(self, now: float | None = None) -> int:
        """Store what every flow sent since the last read; returns the number of rows stored."""
        with self._lock:
            backend = self.counting()
            if backend is None:
                return 0
            counters = backend.flow_counters()  # {} once the deployment stopped counting
            rows = flow_rows(backend.plan, counters, self._last)
            self._last = counters
            if rows:
                self.store.add_packets(time.time() if now is None else now, rows)
            return len(rows)


def flow_rows(plan: Plan, counters: dict[Flow, tuple[int, int]],
              last: dict[Flow, tuple[int, int]]) -> list[dict[str, object]]:
    """One row per flow that sent something since `last`, both ends named and marked if monitored."""
    watched = monitored(plan)
    ends = {interface.ip: (instance, interface.network)
            for instance in plan.instances for interface in instance.interfaces}
    rows = []
    for flow, (packets, size) in sorted(counters.items(), key=lambda item: str(item[0])):
        before_packets, before_size = last.get(flow, (0, 0))
        if packets < before_packets or size < before_size:  # the flow expired and came back
            before_packets = before_size = 0
        if packets == before_packets:
            continue
        src, network = ends.get(flow.src, (None, None))
        dst, _ = ends.get(flow.dst, (None, None))
        labels = watched.get(network, set())
        rows.append({
            "network": network or "",
            "src_ip": str(flow.src), "dest_ip": str(flow.dst), "protocol": flow.protocol,
            "src_port": flow.sport, "dest_port": flow.dport,
            "count": packets - before_packets, "size": size - before_size,
            "src_instance": src.name if src else "", "dest_instance": dst.name if dst else "",
            "src_label": src.label if src else "", "dest_label": dst.label if dst else "",
            "src_watched": bool(src and src.label in labels), "dest_watched": bool(dst and dst.label in labels),
        })
    return rows
