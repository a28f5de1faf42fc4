"""What the bench scripts share: the machine lock, the machine's facts, Markdown tables.

Emulations use machine-wide names (bridges, ports, rules), so a benchmark that
deploys anything holds the same exclusive lock as the integration tests
(tests/integration/conftest.py) for as long as it runs.
"""

from __future__ import annotations

import fcntl
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

LOCK = "/run/fogify-net-machine.lock"


@contextmanager
def machine_lock(path: str = LOCK, quiet: bool = False) -> Iterator[None]:
    """Hold the machine (exclusive flock on `path`); says so on stderr when it has to wait."""
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"waiting for the machine lock {path} (a test or benchmark holds it) ...", file=sys.stderr)
            began = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not quiet:
                print(f"got the machine lock after {time.monotonic() - began:.0f} s", file=sys.stderr)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def _docker_version() -> str:
    try:
        out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine_line() -> str:
    """One line of facts to print under every table: CPU, cores, memory, kernel, Docker, date."""
    return (f"Machine: {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib():.1f} GiB, "
            f"kernel {platform.release()}, Docker {_docker_version()}, {time.strftime('%Y-%m-%d %H:%M %Z')}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table; `align` is one character per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def emit(text: str, markdown: str | None = None) -> None:
    """Print `text`; with `markdown`, also append it to that file."""
    print(text, flush=True)
    if markdown:
        with open(markdown, "a") as f:
            f.write(text + "\n")
