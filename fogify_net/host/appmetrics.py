"""App-level metrics: the JSON object an app writes to /fogify/metrics inside its container.

The file is read through /proc/<pid>/root, i.e. from the host, as root. The
container owns that tree, so neither `fogify` nor `metrics` may be a symlink
(an absolute one would resolve against the host's root) and the file must be
a regular one (opening a FIFO must not block the sampler).
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024
MAX_KEYS = 100  # metrics kept from one file, in its order: bounds what one record adds to the store
MAX_KEY_LENGTH = 64
BUILTIN = frozenset({"cpu", "cpu_util", "memory", "memory_util", "disk_bytes", "count", "timestamp", "ts"})
BUILTIN_PREFIXES = ("network_rx_", "network_tx_")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_app_metrics(pid: int) -> dict[str, float]:
    """The numeric keys of the container's /fogify/metrics as floats; {} when absent or unreadable."""
    data = _read(pid)
    return {} if data is None else parse_app_metrics(data)


def parse_app_metrics(data: bytes) -> dict[str, float]:
    """Numeric keys of a JSON object as floats.

    Bad JSON (typically a file caught half-written) gives {} for this round
    only. Booleans, non-finite numbers and keys that would shadow a built-in
    metric or a record field are dropped.
    """
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        log.debug("/fogify/metrics is not JSON (half-written?); skipped this round")
        return {}
    if not isinstance(document, dict):
        return {}
    metrics: dict[str, float] = {}
    for key, value in document.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key in BUILTIN or key.startswith(BUILTIN_PREFIXES) or len(key) > MAX_KEY_LENGTH:
            continue
        if len(metrics) == MAX_KEYS:
            log.debug("/fogify/metrics has more than %d metrics; the rest are dropped", MAX_KEYS)
            break
        try:
            number = float(value)
        except OverflowError:
            continue
        if math.isfinite(number):
            metrics[key] = number
    return metrics


def _read(pid: int) -> bytes | None:
    try:
        directory = os.open(f"/proc/{pid}/root/fogify", _DIR_FLAGS)
    except OSError:
        return None
    try:
        fd = os.open("metrics", _FILE_FLAGS, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None
        return os.read(fd, MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
