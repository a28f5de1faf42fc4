"""Which process owns the emulation on this machine now: a record beside the machine lock.

The local backend's names are machine-wide (bridges, ports, rules, containers),
so at most one local deployment lives at a time. Its process writes this
record before it creates anything and removes it after its teardown. A
deploy that finds resources with our marks reads it: a living owner means
they are someone's running emulation (refuse); no owner, or a dead one (an API
killed with SIGKILL, a crashed script), means they are leftovers (remove them).
A pid alone could be reused, so the record keeps the process's start time too.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RECORD = Path("/run/fogify-net.owner")
_held = 0  # emulations of this process that claimed the machine and still run


@dataclass(frozen=True)
class Owner:
    pid: int
    started: str  # /proc/<pid>/stat start time, in clock ticks since boot
    what: str  # who, in words: the command line
    run_dir: str = ""  # where its helpers' pid files are

    def alive(self) -> bool:
        return _start_time(self.pid) == self.started

    def is_me(self) -> bool:
        return self.pid == os.getpid()


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def claim(what: str, run_dir: str, record: Path = RECORD) -> None:
    """This process owns the machine's emulation from now on."""
    global _held
    pid = os.getpid()
    record.write_text(json.dumps({"pid": pid, "started": _start_time(pid), "what": what, "run_dir": run_dir}))
    _held += 1


def release_dead(record: Path = RECORD) -> None:
    """Forget an owner that no longer runs."""
    owner = current(record)
    if owner is not None and not owner.alive():
        record.unlink(missing_ok=True)


def release(record: Path = RECORD) -> None:
    """An emulation that claimed the machine is gone; the record goes with this process's last one."""
    global _held
    _held = max(0, _held - 1)
    owner = current(record)
    if _held == 0 and (owner is None or owner.is_me()):
        record.unlink(missing_ok=True)


def current(record: Path = RECORD) -> Owner | None:
    try:
        data = json.loads(record.read_text())
        return Owner(int(data["pid"]), str(data["started"]), str(data.get("what", "")), str(data.get("run_dir", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def living(record: Path = RECORD) -> Owner | None:
    """The owner, if its emulation still runs: another process that is alive, or this one's own."""
    owner = current(record)
    if owner is not None and owner.alive() and (not owner.is_me() or _held > 0):
        return owner
    return None
