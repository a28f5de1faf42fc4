"""Sockets in another process's network namespace, without forking a helper.

A socket belongs to the network namespace it was created in, for its whole
life, whichever thread uses it later. setns() moves only the calling thread,
so a short-lived thread enters the namespace, creates the socket and ends;
the caller's threads never change namespace. (As a container's interfaces
live as long as its namespace does, an open socket there keeps them alive:
close it when the container goes.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable, Sequence

CLONE_NEWNET = 0x40000000

# Where a relayed socket goes now (host/publish.py, host/udprelay.py): the instance's init pid and the
# addresses to try in its namespace, or None while it does not run.
Upstream = Callable[[], "tuple[int, Sequence[str]] | None"]

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def socket_in(pid: int | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A new socket in the network namespace of `pid` (None: this process's). OSError when `pid` is gone
    or its namespace cannot be entered."""
    if pid is None:
        return socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
    result: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns into the namespace of {pid}: {os.strerror(error)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, kind | socket.SOCK_CLOEXEC, proto))
        except BaseException as error:  # handed to the caller's thread
            result.append(error)

    thread = threading.Thread(target=make, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def runs_in(pid: int, container_id: str) -> bool:
    """Whether process `pid` is in the cgroup of container `container_id` now: a pid read before a
    container's restart may since name another process (with another namespace) or none."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return container_id in f.read()
    except OSError:
        return False
