"""Docker containers on this machine: one shared client, starting ours (marked), and why one stopped.

Containers run with `network_mode: none`: the backends give them their
interfaces themselves (Docker's networks would bypass the emulated links).
"""

from __future__ import annotations

import contextlib
from typing import Any

import docker
from docker.models.containers import Container
from docker.types import Mount

from ..compile.naming import LABEL
from ..errors import Conflict

_client: docker.DockerClient | None = None
def docker_client() -> docker.DockerClient:
    """One shared Docker client; the SDK's connection pool is thread-safe."""
    global _client
    if _client is None:
        _client = docker.from_env(timeout=120, max_pool_size=32)
    return _client


def run_container(
    name: str,
    image: str,
    command: Any = None,
    entrypoint: Any = None,
    environment: dict[str, str] | None = None,
    volumes: list[str] | None = None,
    anonymous_volumes: list[str] | None = None,
    working_dir: str | None = None,
    user: str | None = None,
    hostname: str | None = None,
    labels: dict[str, str] | None = None,
    cpu_quota: int | None = None,
    cpu_period: int | None = None,
    cpu_shares: int | None = None,
    cpuset_cpus: str | None = None,
    mem_limit: int | str | None = None,
    memswap_limit: int | str | None = None,
    cap_add: list[str] | None = None,
    privileged: bool = False,
    sysctls: dict[str, str] | None = None,
    tmpfs: dict[str, str] | None = None,
    security_opt: list[str] | None = None,
    client: docker.DockerClient | None = None,
) -> Container:
    """Start a detached container without networking, marked as ours; returns it inspected."""
    options = dict(
        name=name,
        command=command,
        entrypoint=entrypoint,
        environment=environment or {},
        volumes=volumes or [],
        mounts=[Mount(target, None, type="volume") for target in anonymous_volumes or []] or None,
        working_dir=working_dir,
        user=user,
        hostname=hostname,
        labels={**(labels or {}), LABEL: "1"},  # ours last: a model's `fogify-net: "0"` must not unmark it
        network_mode="none",
        cpu_quota=cpu_quota,
        cpu_period=cpu_period,
        cpu_shares=cpu_shares,
        cpuset_cpus=cpuset_cpus,
        mem_limit=mem_limit,
        memswap_limit=memswap_limit,
        cap_add=cap_add,
        privileged=privileged,
        sysctls=sysctls,
        tmpfs=tmpfs or None,
        security_opt=security_opt or None,
        init=True,  # reap zombies and forward signals even when the image has no init
    )
    client = client or docker_client()
    # Create, then start: a start that fails leaves the created container behind, and only that
    # one is removed, by its id. A create that fails made nothing; removing by name there would
    # remove someone else's container that holds the name (the 409 of a name in use).
    try:
        container = client.containers.create(image, **{k: v for k, v in options.items() if v is not None})
    except docker.errors.APIError as error:
        if error.status_code == 409:  # checked before deploying; here for a name taken since
            raise name_taken(name) from error
        raise
    try:
        container.start()
    except docker.errors.APIError:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
        raise
    container.reload()
    return container


def name_taken(name: str) -> Conflict:
    """The 409 of a container name someone else's container holds (we never remove theirs)."""
    return Conflict(f"the container name {name} is taken by a container fogify-net did not start "
                    f"(docker ps -a -f name=^{name}$): remove or rename it, then deploy again")


def exit_reason(container: Container) -> str:
    """Why a container is not running: its exit code, Docker's error, and the last lines it printed."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return "the container is gone"
    state = container.attrs.get("State", {})
    logs = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
    parts = [f"exit code {state.get('ExitCode')}", state.get("Error") or "", logs]
    return "; ".join(p for p in parts if p)
