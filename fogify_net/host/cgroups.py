"""Finding a container's cgroups from its init process, on cgroup v1 and v2."""

from __future__ import annotations

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
