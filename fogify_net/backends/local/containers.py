"""Starting and removing the containers of a plan's instances on this machine.

The container of an instance gets what its service and node profile ask for
(image, command, environment, volumes, limits, labels); its network
interfaces come later, from the local backend's links.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import docker

from ...compile.plan import InstancePlan
from ...host.containers import exit_reason, run_container

log = logging.getLogger(__name__)


def start_container(instance: InstancePlan):
    """Start `instance`'s container (no network yet); returns it, inspected."""
    return run_container(
        instance.container,
        instance.service.image,
        command=_argv(instance.service.command),
        entrypoint=_argv(instance.service.entrypoint),
        environment=instance.environment(),
        volumes=[_volume(v) for v in instance.service.volumes if v.source],
        anonymous_volumes=[v.target for v in instance.service.volumes if not v.source],
        working_dir=instance.service.working_dir,
        user=instance.service.user,
        hostname=instance.hostname,
        labels={**dict(instance.service.labels), "fogify-net.instance": instance.name},
        cpu_quota=instance.cpu_quota,
        cpu_period=instance.cpu_period,
        cpu_shares=instance.node.cpu_shares,
        cpuset_cpus=instance.node.cpuset,
        mem_limit=instance.memory,
        memswap_limit=instance.memory,
        cap_add=list(instance.service.cap_add) or None,
        privileged=instance.service.privileged,
        sysctls={"net.ipv4.ip_forward": "1" if instance.forwarding else "0"},
        tmpfs=dict(instance.service.tmpfs),
        security_opt=list(instance.service.security_opt),
    )


def first_stopped(containers: list) -> str | None:
    """Why the first of these containers that no longer runs stopped (its command failed at once)."""
    for container in containers:
        container.reload()
        if container.status != "running":
            return f"container {container.name} stopped at once: {exit_reason(container)}"
    return None


def _argv(command) -> list[str] | str | None:
    return list(command) if isinstance(command, tuple) else command


def _volume(volume) -> str:
    return f"{volume.source}:{volume.target}:{'ro' if volume.read_only else 'rw'}"


def kill_init(container) -> None:
    """SIGKILL the container's init, if that pid is still this container's (pids are reused)."""
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if not pid:
        return
    try:
        handle = os.pidfd_open(pid)
    except OSError:  # gone already
        return
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            if container.id in f.read():
                signal.pidfd_send_signal(handle, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(handle)


def remove_container(container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        # Docker sometimes answers "removal already in progress"; wait for it to finish.
        log.warning("removing %s: %s", container.name, error)
        for _ in range(50):
            try:
                container.reload()
            except docker.errors.NotFound:
                return
            time.sleep(0.1)
