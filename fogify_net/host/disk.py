"""Disk usage of a directory tree (a container's writable layer), bounded in work."""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger(__name__)

MAX_ENTRIES = 100_000


def tree_usage(path: str, max_entries: int = MAX_ENTRIES) -> tuple[int, bool]:
    """Bytes allocated under `path` (like `du -s`, hard links once) and whether the walk was cut short.

    Symlinks are not followed and the walk stops after `max_entries` entries,
    so a layer with millions of files costs a bounded amount per refresh (the
    value is then a lower bound). Raises OSError when `path` itself is gone.
    """
    total = os.lstat(path).st_blocks * 512
    seen: set[tuple[int, int]] = set()
    pending = [path]
    entries = 0
    while pending:
        directory = pending.pop()
        try:
            scan = os.scandir(directory)
        except OSError:  # removed meanwhile, or unreadable: count what we can
            continue
        with scan:
            for entry in scan:
                entries += 1
                if entries > max_entries:
                    return total, True
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                elif info.st_nlink > 1:
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += info.st_blocks * 512
    return total, False
