"""Stress an instance without any tool inside its image.

Fogify ran `cpulimit ... stress` inside the container, so the image needed
both. Here the host's stress-ng runs in a child cgroup of the container: the
kernel caps it at the asked share of the instance's allocation (a CFS quota
on the child), and its CPU time and memory count against the container, so
cpu_util and memory show the stress. The io stressor writes inside the
container's own /tmp without following its symlinks (iostress.py), not with
stress-ng, which resolved the container's paths as host root.
"""

from __future__ import annotations

import logging
import math
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..model.actions import Stress
from .cgroups import cgroup_dirs

log = logging.getLogger(__name__)

_STRESSORS = {"cpu": "--cpu", "io": "--hdd", "vm": "--vm"}
IO_FILE_BYTES = 64 * 2**20


class StressRunner:
    """Starts bounded stress-ng runs and removes their cgroups when they end."""

    def __init__(self) -> None:
        self._running: list[tuple[subprocess.Popen, list[Path]]] = []
        self._lock = threading.Lock()

    def start(self, pid: int, allocation: float, request: Stress) -> list[str]:
        """Start one stress-ng per stressor asked for in the container of init `pid`, whose CPU
        allocation is `allocation` CPUs; returns the command lines (for the annotation)."""
        dirs = cgroup_dirs(pid)
        commands = []
        for kind, flag in _STRESSORS.items():
            percent = getattr(request, kind)
            if not percent:
                continue
            cpus = allocation * percent / 100
            workers = max(1, math.ceil(cpus))
            if kind == "io":
                argv = [sys.executable, "-m", "fogify_net.host.iostress", "--pid", str(pid), "--workers",
                        str(workers), "--seconds", str(math.ceil(request.duration)), "--bytes", str(IO_FILE_BYTES)]
                described = f"io: {workers} writers of {IO_FILE_BYTES >> 20}M files in /tmp for " \
                            f"{math.ceil(request.duration)}s"
            else:
                argv = ["stress-ng", flag, str(workers), "--timeout", f"{math.ceil(request.duration)}s", "--quiet"]
                if kind == "vm" and request.vm_bytes:
                    argv += ["--vm-bytes", str(max(4096, request.vm_bytes // workers)), "--vm-keep"]
                described = " ".join(argv)
            self._spawn(argv, dirs, cpus, f"fogify-stress-{kind}-{time.monotonic_ns()}")
            commands.append(described)
        return commands

    def _spawn(self, argv: list[str], dirs: dict[str, Path], cpus: float, name: str) -> None:
        """Join the container's cgroups (a capped child for cpu) in a shell, then exec stress-ng."""
        created: list[Path] = []
        targets: list[Path] = []
        if "cpu" in dirs:  # cgroup v1: a capped child of the container's cpu cgroup
            child = dirs["cpu"] / name
            child.mkdir()
            created.append(child)
            (child / "cpu.cfs_period_us").write_text("100000")
            (child / "cpu.cfs_quota_us").write_text(str(max(1000, round(cpus * 100000))))
            targets.append(child / "cgroup.procs")
            for controller in ("cpuacct", "memory", "blkio", "pids", "unified"):
                # unified (hybrid mode): the container's v2 group, whose CPU pressure the fidelity monitor reads
                if controller in dirs and dirs[controller] != dirs["cpu"]:
                    targets.append(dirs[controller] / "cgroup.procs")
        elif "unified" in dirs:  # cgroup v2: no child with controllers beside the container's processes
            targets.append(dirs["unified"] / "cgroup.procs")
            if argv[1] == "--cpu":
                argv += ["--cpu-load", str(min(100, round(100 * cpus / int(argv[2]))))]
        joins = " && ".join(f"echo $$ > {shlex.quote(str(t))}" for t in targets)
        script = f"{joins} && exec {shlex.join(argv)}" if joins else f"exec {shlex.join(argv)}"
        process = subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        with self._lock:
            self._running.append((process, created))
        threading.Thread(target=self._reap, args=(process, created), daemon=True, name="stress-reaper").start()

    def _reap(self, process: subprocess.Popen, created: list[Path]) -> None:
        _, err = process.communicate()
        if process.returncode not in (0, -9, -15):
            log.warning("stress-ng ended with %s: %s", process.returncode, err.decode(errors="replace").strip())
        _remove(created)
        with self._lock:
            self._running = [(p, c) for p, c in self._running if p is not process]

    def stop_all(self) -> None:
        """Kill every stress still running (undeploy) and remove their cgroups."""
        with self._lock:
            running = list(self._running)
        for process, created in running:
            if process.poll() is None:
                process.kill()
            process.wait()
            _remove(created)

    def active(self) -> int:
        with self._lock:
            return sum(1 for p, _ in self._running if p.poll() is None)


def _remove(dirs: list[Path]) -> None:
    for directory in dirs:
        for _ in range(20):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # processes still leaving the cgroup
                time.sleep(0.05)
