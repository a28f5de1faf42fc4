"""A Mininet host that is a Docker container: Containernet's role on stock Mininet.

The container runs with `network_mode: none`; Mininet's control shell is a
*host* bash that has entered only the container's network namespace. So every
tool Mininet (and fogify-net) runs on the node (ip, tc, ping, iperf3) comes
from the host, and the image needs nothing: no bash, no iproute2. Commands
that must run in the container's own file system go through `dexec`.

The constructor keeps Containernet's vocabulary (image/dimage, dcmd,
cpu_quota, cpu_period, cpu_shares, cpuset_cpus, mem_limit, memswap_limit,
volumes, environment), so a Mininet script written for Containernet's
`Docker` host reads the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

import docker
from docker.models.containers import Container
from mininet.node import Host

from ...host.containers import exit_reason, run_container

log = logging.getLogger(__name__)

SHELL_TIMEOUT = 10.0


def lean_shell(cmd: list[str], params: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """`mnexec -cd env VAR=value ... argv` as argv plus Popen options; anything else unchanged."""
    if len(cmd) < 3 or cmd[0] != "mnexec" or not cmd[1].startswith("-") or set(cmd[1][1:]) - {"c", "d"}:
        return cmd, params
    flags, rest = set(cmd[1][1:]), list(cmd[2:])
    env = dict(params.get("env") or os.environ)
    if rest[0] == "env":
        rest.pop(0)
        while rest and "=" in rest[0] and not rest[0].startswith("-"):
            key, value = rest.pop(0).split("=", 1)
            env[key] = value
    if not rest:
        return cmd, params
    return rest, {**params, "env": env, "close_fds": "c" in flags or params.get("close_fds", True),
                  "start_new_session": "d" in flags}


class DockerHost(Host):
    """A Mininet host backed by a Docker container (see the module docstring)."""

    def __init__(self, name: str, image: str | None = None, dimage: str | None = None,
                 dcmd: Any = None, container: Container | None = None, **params: Any):
        """Run the container (or adopt `container`, already running) and attach Mininet's shell to it.

        Docker options: image (or Containernet's dimage), dcmd (command), entrypoint,
        environment, volumes, working_dir, user, hostname, labels, cpu_quota,
        cpu_period, cpu_shares, cpuset_cpus, mem_limit, memswap_limit, cap_add,
        privileged, container_name (default: the node name).
        """
        docker_keys = ("entrypoint", "environment", "volumes", "anonymous_volumes", "working_dir", "user",
                       "hostname", "labels", "cpu_quota", "cpu_period", "cpu_shares", "cpuset_cpus", "mem_limit",
                       "memswap_limit", "cap_add", "privileged")
        options = {key: params.pop(key) for key in docker_keys if key in params}
        container_name = params.pop("container_name", name)
        if container is None:
            image = image or dimage
            if not image:
                raise ValueError(f"{name}: a DockerHost needs an image")
            container = run_container(container_name, image, command=dcmd, **options)
        self.container = container
        self.cpid = int(container.attrs["State"]["Pid"])
        if not self.cpid:
            raise RuntimeError(f"container {container.name} stopped at once: {exit_reason(container)}")
        params.setdefault("inNamespace", False)
        super().__init__(name, **params)

    def startShell(self, mnopts: Any = None) -> None:
        """Mininet's shell start, but bounded: Mininet waits for the prompt forever if the shell dies."""
        watchdog = threading.Timer(SHELL_TIMEOUT, self._abort_shell)
        watchdog.start()
        try:
            super().startShell(mnopts)
        except OSError:
            raise RuntimeError(
                f"{self.name}: no shell in {self.container.name}'s namespace within {SHELL_TIMEOUT:g}s "
                f"({exit_reason(self.container)})"
            ) from None
        finally:
            watchdog.cancel()

    def _abort_shell(self) -> None:
        """Kill the shell and close our end of its pty, so Mininet's blocked read fails."""
        if self.shell is not None:
            self.shell.kill()
        if self.slave is not None:
            os.close(self.slave)
            self.slave = None

    def _popen(self, cmd: list[str], **params: Any):
        """The control shell (the first process Mininet starts) enters the container's network namespace.

        Mininet starts it as `mnexec -cd env PS1=... bash ...`. nsenter runs bash
        directly instead, with mnexec's two effects done by Popen: a new session
        (-d) and no inherited descriptors (-c), and `env`'s variables passed as the
        environment. mnexec -c closes every descriptor number up to the limit one by
        one: 9 ms a shell with a 20,000 limit, against 4 ms this way.
        """
        if self.shell is None:
            cmd, params = lean_shell(cmd, params)
            cmd = ["nsenter", f"--net=/proc/{self.cpid}/ns/net", *cmd]
        return super()._popen(cmd, **params)

    def config(self, mac=None, ip=None, defaultRoute=None, lo="up", **params):
        """Mininet's configuration, skipping what is not asked for (fogify-net configures links in batches)."""
        results: dict = {}
        self.setParam(results, "setMAC", mac=mac)
        self.setParam(results, "setIP", ip=ip)
        self.setParam(results, "setDefaultRoute", defaultRoute=defaultRoute)
        if lo:
            self.cmd("ip link set lo up")
        return results

    def dexec(self, cmd: Any, **kwargs: Any) -> tuple[int, str]:
        """Run `cmd` in the container's own file system; returns (exit code, output)."""
        result = self.container.exec_run(cmd, **kwargs)
        output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else result.output
        return result.exit_code, output

    def update_resources(self, **limits: Any) -> None:
        """Change cpu_quota, cpu_period, cpu_shares, cpuset_cpus, mem_limit, memswap_limit while running."""
        self.container.update(**{k: v for k, v in limits.items() if v is not None})

    def stop_shell(self) -> None:
        """Stop Mininet's shell only; it holds the container's network namespace open while it runs."""
        if self.shell is not None:
            Host.terminate(self)

    def terminate(self) -> None:
        """Stop the shell and remove the container."""
        self.stop_shell()
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True, v=True)
