"""The io stressor: write and delete files in an instance's /tmp, without following its symlinks.

stress-ng's `--hdd --temp-path /proc/<pid>/root/tmp` ran as host root and
resolved that path, and the paths of its files, through the container's
file system: a container that made /tmp (or the name stress-ng was about to
use) a symlink had the host write 64 MB files wherever it pointed. Here the
directory is opened once, component by component with O_NOFOLLOW from the
container's root, and every file is made relative to that descriptor with
O_CREAT | O_EXCL | O_NOFOLLOW, written through its own descriptor and
unlinked relative to the directory: no path the container controls is
resolved by the host again. Run as `python -m fogify_net.host.iostress`
(StressRunner starts it in the container's cgroups).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time

CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_container_dir(pid: int, path: str = "tmp") -> int:
    """A descriptor of `path` (relative, e.g. "tmp") in the container of `pid`, no component a symlink."""
    fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the kernel's link to its root
    try:
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise ValueError(f"no {part!r} in a container path")
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_files(directory: int, size: int, deadline: float, stop: threading.Event | None = None) -> int:
    """Write and delete `size`-byte files in `directory` until `deadline` (monotonic); bytes written."""
    chunk = b"\0" * min(CHUNK, size)
    written = 0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        name = f"fogify-stress-{secrets.token_hex(8)}"
        fd = os.open(name, _NEW, 0o600, dir_fd=directory)
        try:
            left = size
            while left > 0 and time.monotonic() < deadline:
                written += os.write(fd, chunk[:left])
                left -= len(chunk[:left])
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name, dir_fd=directory)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fogify-net io stress")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--bytes", type=int, default=64 * 2**20)
    args = parser.parse_args(argv)
    try:
        directory = open_container_dir(args.pid)
    except (OSError, ValueError) as error:
        print(f"io stress: the container's /tmp cannot be used: {error}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.seconds
    workers = [threading.Thread(target=write_files, args=(directory, args.bytes, deadline))
               for _ in range(max(1, args.workers))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
