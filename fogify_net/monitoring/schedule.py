"""A fixed-rate loop on the monotonic clock: ticks at start + k * interval, never drifting.

Sleeping `interval` after each tick would add the tick's own duration to every
period; here the deadline advances by exactly `interval`, and a tick that
overruns makes the loop skip the slots it missed instead of firing a burst.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class FixedRate:
    """Run `tick` every `interval` seconds until `stop` is set; counts the slots skipped by overruns.

    `late` is how late the tick in progress (or the last one) started after its slot: a loop
    that was not scheduled in time (a saturated machine) shows there before it skips slots.
    """

    def __init__(self, interval: float):
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.interval = interval
        self.ticks = 0
        self.skipped = 0
        self.late = 0.0

    def run(self, stop: threading.Event, tick: Callable[[], object]) -> None:
        deadline = time.monotonic()
        while not stop.is_set():
            self.late = max(0.0, time.monotonic() - deadline)
            tick()
            self.ticks += 1
            deadline += self.interval
            now = time.monotonic()
            if now >= deadline:
                missed = int((now - deadline) // self.interval) + 1
                self.skipped += missed
                deadline += missed * self.interval
                log.debug("tick took longer than its slot: skipping %d slot(s)", missed)
            stop.wait(deadline - now)
