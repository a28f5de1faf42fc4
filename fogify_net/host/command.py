"""Commands in an instance's own file system (docker exec), optionally waited for.

As in Fogify, a string is split like a shell would split it but no shell
runs, so pipes need `sh -c '...'`. Waiting has a timeout; a command that
outlives it is killed on the host, since Docker's exec API cannot kill.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading

from docker.models.containers import Container

from ..model.limits import DEFAULT_COMMAND_TIMEOUT_S, MAX_COMMAND_TIMEOUT_S

DEFAULT_TIMEOUT = DEFAULT_COMMAND_TIMEOUT_S
MAX_OUTPUT = 1 << 20  # bytes kept from a command's output


def run_command(container: Container, command: str | tuple[str, ...], wait: bool, timeout: float | None) -> dict:
    """Start `command`; with `wait`, return {exit_code, output, timed_out}."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    api = container.client.api
    exec_id = api.exec_create(container.id, argv, stdout=True, stderr=True)["Id"]
    if not wait:
        api.exec_start(exec_id, detach=True)
        return {"started": True}
    chunks: list[bytes] = []
    size = [0]

    def read() -> None:
        for chunk in api.exec_start(exec_id, stream=True):
            if size[0] < MAX_OUTPUT:
                chunks.append(chunk)
                size[0] += len(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(min(timeout or DEFAULT_TIMEOUT, MAX_COMMAND_TIMEOUT_S))  # the agent's callers too
    timed_out = reader.is_alive()
    if timed_out:
        pid = api.exec_inspect(exec_id).get("Pid")
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reader.join(5)
    info = api.exec_inspect(exec_id)
    output = b"".join(chunks)[:MAX_OUTPUT].decode(errors="replace")
    return {"exit_code": info.get("ExitCode"), "output": output, "timed_out": timed_out}
