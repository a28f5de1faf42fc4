"""A container's counters (CPU, memory, disk, its switch ports, its app's metrics), read cheaply.

Used by both backends: the local one reads its instances here, each Swarm
agent its node's tasks. Paths are resolved once per container (from
/proc/<pid>/cgroup and the port names) and the files stay open: a round is
then one pread per counter, about 1 us each, where open+read+close costs over
10 us. A file whose cgroup or device is gone fails with OSError
(ENODEV/ENOENT), taken as "this instance is gone".
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .appmetrics import read_app_metrics
from .cgroups import ROOT, cgroup_dirs
from .disk import tree_usage

log = logging.getLogger(__name__)

DISK_REFRESH = 10.0  # seconds between two walks of a writable layer
_FLAGS = os.O_RDONLY | os.O_CLOEXEC


@dataclass(frozen=True)
class SampleTarget:
    """What reading one running instance's counters needs."""

    name: str                     # instance name, `<label>.<n>`
    container_id: str             # full Docker id
    pid: int                      # the container's init, in the host's pid namespace
    cpus: float                   # CPU allocation (quota / period); 0 = the whole machine
    memory_limit: int             # bytes; 0 = the machine's memory
    ports: dict[str, str] = field(default_factory=dict)  # network -> switch-side veth (root namespace)
    upper_dir: str | None = None  # writable layer (GraphDriver.Data.UpperDir), for disk_bytes


def host_cpus() -> float:
    return float(os.cpu_count() or 1)


def host_memory() -> int:
    """MemTotal in bytes: the allocation of a container without a memory limit (as Fogify)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


_HOST_MEMORY = host_memory()


def _read_int(fd: int) -> int:
    return int(os.pread(fd, 64, 0))


def _read_usage_usec(fd: int) -> int:
    """cgroup v2 cpu.stat starts with `usage_usec N`."""
    first = os.pread(fd, 128, 0).split(b"\n", 1)[0]
    name, value = first.split()
    if name != b"usage_usec":
        raise OSError(f"unexpected cpu.stat line {first!r}")
    return int(value)


def _cgroup_dir(dirs: dict[str, Path], controller: str, container_id: str) -> Path:
    """The v1 controller's directory, else the unified one; falls back to Docker's cgroupfs layout.

    The fallback matters when this process runs in another cgroup namespace
    than the container, where /proc/<pid>/cgroup shows paths relative to ours.
    """
    candidates = [dirs[key] for key in (controller, "unified") if key in dirs]
    candidates += [ROOT / controller / "docker" / container_id, ROOT / "docker" / container_id,
                   ROOT / "system.slice" / f"docker-{container_id}.scope"]
    for candidate in candidates:
        if candidate.is_dir() and any((candidate / name).exists() for name in
                                      ("cpuacct.usage", "cpu.stat", "memory.usage_in_bytes", "memory.current")):
            return candidate
    raise FileNotFoundError(f"no {controller} cgroup for container {container_id[:12]}")


class ContainerProbe:
    """Open counter files of one target; `read()` gives its built-in metrics for one round."""

    def __init__(self, target: SampleTarget):
        self.target = target
        self._fds: list[int] = []
        self._ports: dict[str, tuple[int, int] | None] = {}
        self._cpus = target.cpus if target.cpus and target.cpus > 0 else host_cpus()
        self._memory_limit = target.memory_limit if target.memory_limit and target.memory_limit > 0 else _HOST_MEMORY
        self._prev_cpu: tuple[int, int] | None = None  # (cpu ns, monotonic ns)
        self._disk: float | None = None
        self._disk_at: float | None = None
        self._disk_warned = False
        try:
            dirs = cgroup_dirs(target.pid)
            cpu_dir = _cgroup_dir(dirs, "cpuacct", target.container_id)
            if (cpu_dir / "cpuacct.usage").exists():
                self._cpu_fd, self._read_cpu = self._open(cpu_dir / "cpuacct.usage"), _read_int
            else:
                self._cpu_fd, self._read_cpu = self._open(cpu_dir / "cpu.stat"), _read_usage_usec
            memory_dir = _cgroup_dir(dirs, "memory", target.container_id)
            name = "memory.usage_in_bytes" if (memory_dir / "memory.usage_in_bytes").exists() else "memory.current"
            self._memory_fd = self._open(memory_dir / name)
        except BaseException:
            self.close()
            raise
        self._cpu_scale = 1 if self._read_cpu is _read_int else 1000
        for network in target.ports:
            self._open_port(network)

    def _open(self, path: Path | str) -> int:
        fd = os.open(path, _FLAGS)
        self._fds.append(fd)
        return fd

    def _open_port(self, network: str) -> tuple[int, int] | None:
        """(rx_bytes fd, tx_bytes fd) of the network's port, or None while the port does not exist."""
        base = f"/sys/class/net/{self.target.ports[network]}/statistics/"
        fds: list[int] = []
        try:
            fds.append(os.open(base + "rx_bytes", _FLAGS))
            fds.append(os.open(base + "tx_bytes", _FLAGS))
        except OSError:
            log.debug("%s: port %s of %s not found", self.target.name, self.target.ports[network], network)
            _close(fds)
            self._ports[network] = None
            return None
        self._ports[network] = (fds[0], fds[1])
        return fds[0], fds[1]

    def read(self) -> dict[str, float]:
        """Built-in metrics now; raises OSError when the container's cgroup is gone."""
        now = time.monotonic_ns()
        cpu = self._read_cpu(self._cpu_fd) * self._cpu_scale
        memory = _read_int(self._memory_fd)
        prev, self._prev_cpu = self._prev_cpu, (cpu, now)
        if prev is None or cpu < prev[0] or now <= prev[1]:
            util = 0.0  # the first sample, or a restarted cgroup
        else:
            util = 100.0 * (cpu - prev[0]) / ((now - prev[1]) * self._cpus)
        metrics = {"cpu": float(cpu), "cpu_util": util, "memory": float(memory),
                   "memory_util": 100.0 * memory / self._memory_limit if self._memory_limit else 0.0}
        disk = self._disk_bytes(now / 1e9)
        if disk is not None:
            metrics["disk_bytes"] = disk
        for network, fds in self._ports.items():
            fds = fds or self._open_port(network)
            if fds is None:
                continue
            try:
                port_rx, port_tx = _read_int(fds[0]), _read_int(fds[1])
            except OSError:  # the port went away (link removed); look for it again next round
                _close(fds)
                self._ports[network] = None
                continue
            # The port is the switch's side: what it transmits, the instance received.
            metrics[f"network_rx_{network}"] = float(port_tx)
            metrics[f"network_tx_{network}"] = float(port_rx)
        return metrics

    def _disk_bytes(self, now: float) -> float | None:
        """The writable layer's size, walked at most every DISK_REFRESH seconds; the last value in between."""
        if self.target.upper_dir is None:
            return None
        if self._disk_at is None or now - self._disk_at >= DISK_REFRESH:
            self._disk_at = now
            try:
                size, truncated = tree_usage(self.target.upper_dir)
            except OSError as error:
                log.debug("%s: cannot walk %s: %s", self.target.name, self.target.upper_dir, error)
                return self._disk
            if truncated and not self._disk_warned:
                self._disk_warned = True
                log.warning("%s: writable layer has too many files; disk_bytes is a lower bound", self.target.name)
            self._disk = float(size)
        return self._disk

    def close(self) -> None:
        _close(self._fds)
        for fds in self._ports.values():
            _close(fds or ())
        self._ports.clear()


def _close(fds: list[int] | tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    if isinstance(fds, list):
        fds.clear()


class OpenProbes:
    """Probes (anything with close()) kept open per container id from one round to the next."""

    def __init__(self) -> None:
        self._probes: dict[str, Any] = {}

    def keep(self, container_ids: set[str]) -> None:
        """Close the files of every container not in `container_ids`."""
        self.forget([cid for cid in self._probes if cid not in container_ids])

    def forget(self, container_ids: list[str]) -> None:
        for container_id in container_ids:
            probe = self._probes.pop(container_id, None)
            if probe is not None:
                probe.close()

    def close(self) -> None:
        self.forget(list(self._probes))


class CounterReader(OpenProbes):
    """Reads a round of targets, keeping each target's files open from one round to the next.

    A target that changed (a restart gives a new pid, a network action new
    ports) is opened afresh; one whose files vanish during a round is left out
    of that round; targets no longer asked for are closed.
    """

    def read(self, targets: list[SampleTarget]) -> dict[str, dict[str, float]]:
        """{instance: metrics} of the targets that could be read now, app metrics included."""
        samples: dict[str, dict[str, float]] = {}
        for target in targets:
            metrics = self.read_one(target)
            if metrics is not None:
                samples[target.name] = metrics
        self.keep({target.container_id for target in targets})
        return samples

    def read_one(self, target: SampleTarget) -> dict[str, float] | None:
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
            self.forget([target.container_id])
            return None
        metrics.update(read_app_metrics(target.pid))
        return metrics

    def target(self, container_id: str) -> SampleTarget | None:
        """The target last read for this container, if its files are open."""
        probe = self._probes.get(container_id)
        return probe.target if probe is not None else None

