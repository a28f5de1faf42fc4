"""The sampler: one thread storing every instance's metrics once per interval.

Each round asks the deployment for this round's samples (`source()`, the
Backend's `samples()`): the local backend reads its containers' counters
here, the Swarm backend asks its node agents. So scaled-out instances are
sampled from their first round and removed ones drop out, and nothing an
instance does stops the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .schedule import FixedRate
from .store import MetricStore

log = logging.getLogger(__name__)

Samples = dict[str, dict[str, float]]  # instance -> metric -> value


class Sampler:
    """Stores `source()` into `store` every `interval` seconds on a fixed schedule.

    `cpu_seconds` and `rounds` account for the CPU time spent in rounds (the
    calling thread's time), which bench/monitoring.py reports.
    """

    def __init__(self, source: Callable[[], Samples], store: MetricStore, interval: float = 1.0):
        self.source = source
        self.store = store
        self.schedule = FixedRate(interval)
        self.rounds = 0
        self.cpu_seconds = 0.0
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
        """Stop the thread (after the round in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _tick(self) -> None:
        try:
            self.sample_once()
        except Exception:  # a store error (disk full, ...) must not end the sampling
            log.exception("sampling round failed")

    def sample_once(self, now: float | None = None) -> Samples:
        """Take one round and store it (at `now`, epoch seconds); returns the samples.

        A round with no instance is not stored, so the count only moves when
        there is something to count.
        """
        with self._lock:
            started = time.thread_time()
            ts = time.time() if now is None else now
            try:
                samples = self.source()
            except Exception:
                log.exception("reading this round's samples failed; skipping it")
                samples = {}
            if samples:
                self.store.add_round(ts, samples)
            self.rounds += 1
            self.cpu_seconds += time.thread_time() - started
            return samples
