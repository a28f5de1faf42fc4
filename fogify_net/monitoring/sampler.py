"""The sampler: one thread reading every instance's counters once per interval into the store.

Each round asks `targets()` what runs now, so scaled-out instances are sampled
from their first round and removed ones drop out. A target's files are opened
once (see probe.py) and kept until it disappears or changes (a restart gives a
new pid, a network action new ports). An instance whose files vanish during a
round is left out of that round; nothing an instance does stops the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .appmetrics import read_app_metrics
from .probe import ContainerProbe
from .schedule import FixedRate
from .store import MetricStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleTarget:
    """What the sampler needs to know about one running instance."""

    name: str                     # instance name, `<label>.<n>`
    container_id: str             # full Docker id
    pid: int                      # the container's init, in the host's pid namespace
    cpus: float                   # CPU allocation (quota / period); 0 = the whole machine
    memory_limit: int             # bytes; 0 = the machine's memory
    ports: dict[str, str] = field(default_factory=dict)  # network -> switch-side veth (root namespace)
    upper_dir: str | None = None  # writable layer (GraphDriver.Data.UpperDir), for disk_bytes


class Sampler:
    """Samples `targets()` into `store` every `interval` seconds on a fixed schedule.

    `cpu_seconds` and `rounds` account for the CPU time spent in rounds (the
    calling thread's time), which bench/monitoring.py reports.
    """

    def __init__(self, targets: Callable[[], list[SampleTarget]], store: MetricStore, interval: float = 1.0,
                 remote: Callable[[], dict[str, dict[str, float]]] | None = None):
        """`remote` gives samples measured elsewhere this round (the Swarm nodes' agents), by instance."""
        self.targets = targets
        self.remote = remote
        self.store = store
        self.schedule = FixedRate(interval)
        self.rounds = 0
        self.cpu_seconds = 0.0
        self._probes: dict[str, ContainerProbe] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self.schedule.interval

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.schedule.run, args=(self._stop, self._tick),
                                        name="fogify-sampler", daemon=True)
        self._thread.start()
        log.info("sampling every %.3gs", self.interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread (after the round in progress) and close every cached file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            for probe in self._probes.values():
                probe.close()
            self._probes.clear()

    def _tick(self) -> None:
        try:
            self.sample_once()
        except Exception:  # a store error (disk full, ...) must not end the sampling
            log.exception("sampling round failed")

    def sample_once(self, now: float | None = None) -> dict[str, dict[str, float]]:
        """Sample every target once and store the round (at `now`, epoch seconds); returns the samples.

        A round with no instance is not stored, so the count only moves when
        there is something to count.
        """
        with self._lock:
            started = time.thread_time()
            ts = time.time() if now is None else now
            try:
                targets = self.targets()
            except Exception:
                log.exception("listing the sample targets failed; skipping this round")
                targets = []
            samples: dict[str, dict[str, float]] = {}
            for target in targets:
                metrics = self._sample(target)
                if metrics is not None:
                    samples[target.name] = metrics
            self._forget({target.container_id for target in targets})
            if self.remote is not None:
                try:
                    samples.update(self.remote())
                except Exception:
                    log.exception("remote samples failed; this round has the local ones only")
            if samples:
                self.store.add_round(ts, samples)
            self.rounds += 1
            self.cpu_seconds += time.thread_time() - started
            return samples

    def _sample(self, target: SampleTarget) -> dict[str, float] | None:
        probe = self._probes.get(target.container_id)
        if probe is not None and probe.target != target:
            probe.close()
            probe = None
        if probe is None:
            try:
                probe = ContainerProbe(target)
            except (OSError, ValueError) as error:
                log.debug("%s: not sampled this round: %s", target.name, error)
                self._probes.pop(target.container_id, None)
                return None
            self._probes[target.container_id] = probe
        try:
            metrics = probe.read()
        except (OSError, ValueError) as error:  # removed or crashed meanwhile
            log.debug("%s: counters vanished: %s", target.name, error)
            probe.close()
            del self._probes[target.container_id]
            return None
        metrics.update(read_app_metrics(target.pid))
        return metrics

    def _forget(self, running: set[str]) -> None:
        for container_id in [cid for cid in self._probes if cid not in running]:
            self._probes.pop(container_id).close()
