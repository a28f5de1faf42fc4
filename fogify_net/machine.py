"""The machine lock: one user of machine-wide names at a time.

Emulations use machine-wide names (bridges, ports, rules), so the integration
tests and the benchmarks hold an exclusive flock for as long as they run, and
`fogify-net cleanup`, which removes everything of ours, waits for them rather
than pulling an emulation away from under them. The holder marks its
environment, so that its own children (and itself) do not wait for it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOCK = "/run/fogify-net-machine.lock"
HELD = "FOGIFY_NET_MACHINE_LOCK"  # the lock's path, while this process or a parent holds it


@contextmanager
def machine_lock(path: str = LOCK, quiet: bool = False) -> Iterator[None]:
    """Hold the machine (exclusive flock on `path`); says so on stderr when it has to wait."""
    if os.environ.get(HELD) == path:
        yield
        return
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"waiting for the machine lock {path}: a test run or benchmark holds it ...", file=sys.stderr)
            began = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not quiet:
                print(f"got the machine lock after {time.monotonic() - began:.0f} s", file=sys.stderr)
        os.environ[HELD] = path
        try:
            yield
        finally:
            os.environ.pop(HELD, None)
            fcntl.flock(lock, fcntl.LOCK_UN)
