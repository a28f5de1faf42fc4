"""App-level metrics: counters, gauges and per-interval means, published to /fogify/metrics.

The emulator's monitoring reads that file every sample and turns each key into
a metric column, so the file must always hold a complete JSON object of
numbers: it is rewritten through a temporary file and a rename in the same
directory, and a reader never sees half a file.

A mean ("send_latency_ms") covers the requests completed since the previous
publication, i.e. the last second. When nothing completed in that second the
key is left out, so a plot shows a gap instead of a false zero.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


class Metrics:
    """The numbers of one role, shared by its threads (the lock keeps updates whole)."""

    def __init__(self, counters: Iterable[str] = (), means: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {name: 0 for name in counters}
        self._sums: dict[str, list[float]] = {name: [0.0, 0] for name in means}
        self._last_means: dict[str, float] = {}
        self._gauges: dict[str, float | None] = {}
        self._gauge_fns: dict[str, Callable[[], float | None]] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + amount

    def set(self, name: str, value: float | None) -> None:
        """A value that holds until the next set (None removes it from the output)."""
        with self._lock:
            self._gauges[name] = value

    def gauge(self, name: str, read: Callable[[], float | None]) -> None:
        """A value read at publication time, e.g. the length of a queue."""
        self._gauge_fns[name] = read

    def observe(self, name: str, value: float) -> None:
        """One sample of a mean, e.g. one request's round trip in ms."""
        with self._lock:
            total = self._sums.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def roll(self) -> dict[str, float]:
        """Close the interval: compute its means, start a new one, return the full snapshot."""
        with self._lock:
            self._last_means = {
                name: round(total / count, 3) for name, (total, count) in self._sums.items() if count
            }
            for total in self._sums.values():
                total[0], total[1] = 0.0, 0
        return self.current()

    def current(self) -> dict[str, float]:
        """Counters and gauges now, means of the last closed interval (does not close one)."""
        gauges = {name: read() for name, read in self._gauge_fns.items()}
        with self._lock:
            snapshot: dict[str, float] = dict(self._counters)
            gauges.update(self._gauges)
            snapshot.update(self._last_means)
        snapshot.update({name: value for name, value in gauges.items() if value is not None})
        return snapshot


def write_atomic(path: str, data: dict) -> None:
    """Replace `path` with `data` as JSON so that readers see the old or the new file, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the monitoring may read as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def publish_forever(metrics: Metrics, path: str, interval: float, stop: threading.Event) -> None:
    """Roll and write the metrics every `interval` seconds until `stop`, then once more."""
    failing = False
    next_at = time.monotonic()
    while True:
        try:
            write_atomic(path, metrics.roll())
            if failing:
                log.info("metrics file %s is written again", path)
            failing = False
        except OSError as exc:
            if not failing:  # say it once, not every second
                log.warning("cannot write metrics file %s: %s", path, exc)
            failing = True
        if stop.is_set():
            return
        next_at += interval
        delay = next_at - time.monotonic()
        if delay < 0:  # we fell behind (a stalled disk): keep the cadence, do not burst
            next_at, delay = time.monotonic(), 0
        stop.wait(delay)
