"""What the bench scripts share: the machine lock, the machine's facts, Markdown tables.

A benchmark that deploys anything holds the machine lock (fogify_net.machine),
as the integration tests do, for as long as it runs.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Sequence

from fogify_net.machine import machine_lock  # noqa: F401  (the bench scripts import it from here)


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
