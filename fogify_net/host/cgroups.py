"""Finding a container's cgroups from its init process, on cgroup v1 and v2."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """Controller name -> cgroup directory of `pid`; v2 gives one entry, "unified".

    v1 hierarchies may be co-mounted ("cpu,cpuacct"); each controller maps to
    its mounted directory, so callers ask for "cpu" or "memory" either way.
    """
    dirs: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # the v2 hierarchy: all of it on a v2 host, or mounted at unified/ in hybrid mode
            for mount in (ROOT, ROOT / "unified"):
                if (mount / "cgroup.controllers").exists() and (mount / relative).is_dir():
                    dirs["unified"] = mount / relative
                    break
            continue
        names = [c.replace("name=", "") for c in controllers.split(",")]
        for mount in (ROOT / controllers, *(ROOT / name for name in names)):
            if mount.is_dir():
                for name in names:
                    dirs[name] = mount / relative
                break
    return dirs


def join(pid: int, container_pid: int) -> None:
    """Put process `pid` (which runs outside the container, e.g. a shell in its network namespace) into
    the cgroups of the container whose init is `container_pid`, so its CPU and memory limits hold it and
    its children too, as they hold the container's own processes."""
    for directory in sorted(set(cgroup_dirs(container_pid).values())):
        if directory != ROOT and (directory / "cgroup.procs").exists():
            (directory / "cgroup.procs").write_text(str(pid))


def cpu_usage_ns(container_pid: int) -> int:
    """CPU time the cgroup of the container whose init is `container_pid` has used, in ns."""
    dirs = cgroup_dirs(container_pid)
    if "cpuacct" in dirs and (dirs["cpuacct"] / "cpuacct.usage").exists():
        return int((dirs["cpuacct"] / "cpuacct.usage").read_text())
    for line in (dirs["unified"] / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    raise OSError(f"no CPU usage in the cgroup of pid {container_pid}")


def joined(container_pid: int) -> list[int]:
    """The processes in the container's cgroup that are not in its pid namespace: those join() put there
    (and their children), which the container's end would not end."""
    dirs = cgroup_dirs(container_pid)
    directory = dirs.get("pids") or dirs.get("cpu") or dirs.get("unified")
    if directory is None or directory == ROOT:
        return []
    try:
        own = os.readlink(f"/proc/{container_pid}/ns/pid")
        pids = [int(line) for line in (directory / "cgroup.procs").read_text().split()]
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != own:
                found.append(pid)
        except OSError:  # ended meanwhile
            continue
    return found
