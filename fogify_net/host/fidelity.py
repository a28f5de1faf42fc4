"""What a machine can tell about how faithfully it runs an emulation: the readings, and their readers.

Every backend reports, once per sampling round, a `Readings`: each machine's
CPU (per core, and how long runnable tasks waited for one), each instance's
CPU against its quota (cgroup usage, CFS throttling, cgroup CPU pressure),
each shaped link's HTB classes (rate, bytes, drops, backlog) and each delay
queue's counters (lateness histogram, kernel drops). All counters are
cumulative, as the kernel keeps them, stamped with the reading machine's
monotonic clock, so a reader keeps no state between rounds and the
monitor (fogify_net.monitoring.fidelity) takes the differences. The local
backend reads them here; each Swarm agent reads its node here and sends them
over the wire (backends/swarm/wire.py).

Readers keep their files open and use pread, as the counter reader does
(host/counters.py): a round is one pread per counter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cgroups import ROOT, cgroup_dirs
from .counters import OpenProbes
from .tcstats import ClassReader

log = logging.getLogger(__name__)

_FLAGS = os.O_RDONLY | os.O_CLOEXEC
PSI_CPU = "/proc/pressure/cpu"


@dataclass(frozen=True)
class HostCpu:
    """One machine's CPU, cumulative since boot."""

    node: str
    at: float  # monotonic seconds on that machine
    cores: tuple[tuple[int, int], ...]  # per core: (busy ticks, all ticks); steal counts as busy
    stall_us: int | None  # time some runnable task waited for a CPU (PSI cpu "some"); None without PSI
    runnable: int  # tasks runnable at the reading (procs_running)


@dataclass(frozen=True)
class InstanceCpu:
    """One instance's CPU cgroup, cumulative since its start."""

    name: str
    node: str
    at: float
    quota: float  # CPUs it is allowed (its declared node); 0: no limit
    usage_ns: int
    periods: int  # CFS bandwidth periods in which it ran
    throttled: int  # of those, periods in which it hit its quota
    throttled_ns: int  # of its whole cgroup subtree: a child group's own quota throttles too (stress's does)
    stall_us: int | None  # time some of its tasks waited for a CPU (cgroup PSI); None without cgroup PSI
    groups_gone: int = 0  # child groups removed since its start: each took its last moments of throttling along


@dataclass(frozen=True)
class LinkQueue:
    """One HTB class of a shaped direction (the default class, or one peer's)."""

    instance: str
    network: str
    direction: str  # uplink or downlink
    peer: str  # the peer instance a links rule gives its own class; "" for the default class
    node: str
    at: float
    rate: int  # bit/s, as installed
    bytes: int
    packets: int
    drops: int
    overlimits: int  # times a packet had to wait for the rate
    qlen: int  # packets queued at the reading
    backlog: int  # bytes queued at the reading


@dataclass(frozen=True)
class DelayQueue:
    """One delay-line queue (a shaped direction with a delay, or one peer's), cumulative since bound."""

    instance: str
    network: str
    direction: str
    peer: str
    node: str
    queue: int
    delay_ms: float
    packets: int
    released: int
    dropped: int  # by the kernel (the queue or the helper's socket was full) or the helper (past its byte budget)
    held: int  # now
    late_hist: tuple[int, ...]  # released packets by lateness (fogify_net.host.delayline.driver.LATE_EDGES_US)


@dataclass
class Readings:
    """One round of everything above, for the whole deployment."""

    hosts: dict[str, HostCpu] = field(default_factory=dict)
    instances: dict[str, InstanceCpu] = field(default_factory=dict)
    links: list[LinkQueue] = field(default_factory=list)
    delays: list[DelayQueue] = field(default_factory=list)
    delay_lines_down: list[str] = field(default_factory=list)  # helpers not running (what they serve)

    def merge(self, other: Readings) -> None:
        """Add another machine's readings (the Swarm backend gathers one per node)."""
        self.hosts.update(other.hosts)
        self.instances.update(other.instances)
        self.links += other.links
        self.delays += other.delays
        self.delay_lines_down += other.delay_lines_down


def _pread(fd: int, size: int = 4096) -> bytes:
    return os.pread(fd, size, 0)


def parse_proc_stat(text: bytes) -> tuple[tuple[tuple[int, int], ...], int]:
    """(per core (busy, all) ticks, procs_running) from /proc/stat."""
    cores, running = [], 0
    for line in text.split(b"\n"):
        if line.startswith(b"cpu") and line[3:4].isdigit():
            values = [int(v) for v in line.split()[1:]]
            user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
            busy = user + nice + system + irq + softirq + steal
            cores.append((busy, busy + idle + iowait))
        elif line.startswith(b"procs_running"):
            running = int(line.split()[1])
    return tuple(cores), running


def parse_psi_some(text: bytes) -> int | None:
    """The `some` line's total (us) of a PSI file; None if it has none."""
    for line in text.split(b"\n"):
        if line.startswith(b"some "):
            for word in line.split():
                if word.startswith(b"total="):
                    return int(word[6:])
    return None


class HostCpuReader:
    """This machine's /proc/stat and CPU pressure, files kept open."""

    def __init__(self, node: str):
        self.node = node
        self._stat = os.open("/proc/stat", _FLAGS)
        try:
            self._psi: int | None = os.open(PSI_CPU, _FLAGS)
            _pread(self._psi)  # open succeeds but read fails with EOPNOTSUPP when PSI is off (psi=0)
        except OSError:
            self._psi = None

    def read(self) -> HostCpu:
        at = time.monotonic()
        cores, running = parse_proc_stat(_pread(self._stat, 1 << 16))
        stall = parse_psi_some(_pread(self._psi)) if self._psi is not None else None
        return HostCpu(self.node, at, cores, stall, running)

    def close(self) -> None:
        for fd in (self._stat, self._psi):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _cpu_stat_fields(text: bytes) -> dict[bytes, int]:
    fields = {}
    for line in text.split(b"\n"):
        parts = line.split()
        if len(parts) == 2:
            fields[parts[0]] = int(parts[1])
    return fields


def _throttled_ns(fields: dict[bytes, int], v2: bool) -> int:
    return fields.get(b"throttled_usec", 0) * 1000 if v2 else fields.get(b"throttled_time", 0)


class _CgroupProbe:
    """One container's CPU cgroup files (v1: cpu.stat and cpuacct.usage; v2: cpu.stat), and its cpu.pressure."""

    def __init__(self, pid: int, container_id: str):
        self.pid = pid
        self._fds: list[int] = []
        self.children: ChildGroupsThrottling | None = None
        try:
            dirs = cgroup_dirs(pid)
            cpu = dirs.get("cpu") or dirs.get("unified") or ROOT / "cpu" / "docker" / container_id
            self._v2 = not (cpu / "cpuacct.usage").exists() and "cpu" not in dirs
            self._stat = self._open(cpu / "cpu.stat")
            usage_dir = dirs.get("cpuacct")
            self._usage = self._open(usage_dir / "cpuacct.usage") if usage_dir and not self._v2 else None
            self._psi = None
            unified = dirs.get("unified")
            if unified is not None and (unified / "cpu.pressure").exists():
                self._psi = self._open(unified / "cpu.pressure")
                _pread(self._psi)
            self.children = ChildGroupsThrottling(cpu, self._v2)
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path) -> int:
        fd = os.open(path, _FLAGS)
        self._fds.append(fd)
        return fd

    def read(self) -> tuple[int, int, int, int, int | None]:
        """(usage ns, periods, throttled periods, throttled ns of the subtree, stall us or None)."""
        fields = _cpu_stat_fields(_pread(self._stat))
        if self._v2:
            usage = fields.get(b"usage_usec", 0) * 1000
        else:
            usage = int(_pread(self._usage, 64)) if self._usage is not None else 0
        stall = parse_psi_some(_pread(self._psi)) if self._psi is not None else None
        throttled_ns = _throttled_ns(fields, self._v2) + self.children.read()
        return usage, fields.get(b"nr_periods", 0), fields.get(b"nr_throttled", 0), throttled_ns, stall

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self.children is not None:
            self.children.close()


class ChildGroupsThrottling:
    """The CFS throttled time of the cgroups below a container's, cumulative.

    The container's cgroup PSI counts a task throttled by a child group's own
    quota as waiting for a CPU, as it does one throttled by the container's
    quota, so the monitor must subtract the whole subtree's throttling, not
    only the container's: the stress action runs in a capped child, and an
    image may make its own. A removed group keeps its last reading in the
    sum; what it was throttled after that reading is lost, and `gone` counts
    such removals so that the monitor can leave that round unjudged.

    Most containers have no child group: a directory's link count (2 + its
    subdirectories, in cgroupfs as in other file systems) says so with one
    fstat, and the walk runs only when there are or were children.
    """

    def __init__(self, top: Path, v2: bool):
        self.top = top
        self.v2 = v2
        self.gone = 0
        self._gone_ns = 0
        self._groups: dict[str, tuple[int, int]] = {}  # relative path -> (cpu.stat fd or -1, throttled ns read last)
        self._top_fd = os.open(top, _FLAGS | os.O_DIRECTORY)

    def read(self) -> int:
        if not self._groups and os.fstat(self._top_fd).st_nlink <= 2:
            return self._gone_ns
        seen = {}
        for relative in child_groups(self.top):
            fd, last = self._groups.pop(relative, (-1, 0))
            try:
                if fd < 0:
                    fd = os.open(self.top / relative / "cpu.stat", _FLAGS)
                last = _throttled_ns(_cpu_stat_fields(_pread(fd)), self.v2)
            except (OSError, ValueError):  # removed while we looked: gone, below
                self._groups[relative] = (fd, last)
                continue
            seen[relative] = (fd, last)
        for fd, last in self._groups.values():  # the groups that went away
            self._gone_ns += last
            self.gone += 1
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._groups = seen
        return self._gone_ns + sum(last for _, last in seen.values())

    def close(self) -> None:
        for fd in [self._top_fd, *(fd for fd, _ in self._groups.values())]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._groups.clear()
        self._top_fd = -1


MAX_CHILD_GROUPS = 64  # child groups read per container and round; the throttling of more is not counted


def child_groups(top: Path) -> list[str]:
    """Relative paths of the cgroups below `top`, each after its parent, at most MAX_CHILD_GROUPS."""
    found: list[str] = []
    pending = [""]
    while pending and len(found) < MAX_CHILD_GROUPS:
        relative = pending.pop()
        try:
            with os.scandir(top / relative if relative else top) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = f"{relative}/{entry.name}" if relative else entry.name
                        found.append(child)
                        pending.append(child)
        except OSError:  # removed meanwhile
            continue
    return found[:MAX_CHILD_GROUPS]


class InstanceCpuReader(OpenProbes):
    """Instances' CPU cgroups, files kept open per container and closed when it is no longer asked for."""

    def __init__(self, node: str):
        super().__init__()
        self.node = node

    def read(self, targets: dict[str, tuple[str, int, float]]) -> dict[str, InstanceCpu]:
        """{instance: reading} for targets {container id: (instance, pid, quota in CPUs)} readable now."""
        found = {}
        for container_id, (name, pid, quota) in targets.items():
            probe = self._probes.get(container_id)
            if probe is not None and probe.pid != pid:  # restarted: a new cgroup
                probe.close()
                probe = None
            try:
                if probe is None:
                    probe = self._probes[container_id] = _CgroupProbe(pid, container_id)
                usage, periods, throttled, throttled_ns, stall = probe.read()
            except (OSError, ValueError) as error:
                log.debug("%s: no CPU cgroup reading: %s", name, error)
                self.forget([container_id])
                continue
            found[name] = InstanceCpu(name, self.node, time.monotonic(), quota, usage, periods, throttled,
                                      throttled_ns, stall, probe.children.gone)
        self.keep(set(targets))
        return found


@dataclass(frozen=True)
class LinkTarget:
    """Where one shaped direction's HTB classes are: the device, in the namespace of `pid` (None: ours)."""

    instance: str
    network: str
    direction: str
    pid: int | None
    device: str
    peers: dict[int, str]  # class minor -> peer address ("" for the default class)


def read_link_queues(reader: ClassReader, targets: list[LinkTarget], node: str) -> list[LinkQueue]:
    """Every target's HTB classes as LinkQueues; a device that is gone is left out."""
    wanted: dict[int | None, list[str]] = {}
    for target in targets:
        wanted.setdefault(target.pid, []).append(target.device)
    classes = reader.read(wanted)
    at = time.monotonic()
    queues = []
    for target in targets:
        for stats in classes.get((target.pid, target.device), []):
            if stats.minor not in target.peers:
                continue
            queues.append(LinkQueue(target.instance, target.network, target.direction, target.peers[stats.minor],
                                    node, at, stats.rate, stats.bytes, stats.packets, stats.drops, stats.overlimits,
                                    stats.qlen, stats.backlog))
    return queues


def name_peers(readings: Readings, names: dict[tuple[str, str], str]) -> None:
    """Replace peer addresses by instance names ({(network, address): instance}), where known."""
    def named(item):
        return dataclasses.replace(item, peer=names.get((item.network, item.peer), item.peer)) if item.peer else item

    readings.links = [named(link) for link in readings.links]
    readings.delays = [named(delay) for delay in readings.delays]
