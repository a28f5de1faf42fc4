"""fogify-delayd's line protocol refuses malformed, signed and overflowing numbers (strtoull with errno)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fogify_net.host.delayline.driver import BUILT_BINARY


@pytest.fixture(scope="module")
def delayd() -> Path:
    """The helper built from this checkout (make is a no-op when it is current)."""
    subprocess.run(["make", "-s", "-C", str(BUILT_BINARY.parent)], check=True, capture_output=True)
    return BUILT_BINARY


def converse(binary: Path, lines: list[str]) -> list[str]:
    done = subprocess.run([str(binary)], input="".join(f"{line}\n" for line in lines), capture_output=True,
                          text=True, timeout=30)
    return done.stdout.splitlines()


BAD = [
    "set 1 -1 0 0 uniform",  # strtoull would take it as 2**64 - 1
    "set 1 18446744073709551616 0 0 uniform",  # 2**64: ERANGE
    "set 1 99999999999999999999999999 0 0 uniform",
    "set 4294967297 1000 0 0 uniform",  # 2**32 + 1: sscanf's %u wrapped it to queue 1
    "set 70000 1000 0 0 uniform",
    "set 1 3600000001 0 0 uniform",
    "set 1 1000 0 1001 uniform",
    "set 1 1000 0 0 uniformx",
    "set 1 1000 0 0 uniform extra",
    "set 1 1000x 0 0 uniform",
    "set 1 +5 0 0 uniform",
    "set 1 1000 0 0",
    "del -1",
    "del 65536",
    "del 18446744073709551617",
    "del 1 2",
]


def test_bad_numbers_are_refused(delayd):
    replies = converse(delayd, [*BAD, "ping"])
    assert len(replies) == len(BAD) + 1
    assert all(reply.startswith("err ") for reply in replies[:-1]), list(zip(BAD, replies))
    assert replies[-1] == "pong"


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a queue needs CAP_NET_ADMIN")
def test_good_commands_still_work(delayd):
    replies = converse(delayd, ["set 65531 1000 500 250 pareto", "set 65531 0 0 0 uniform", "del 65531",
                                "del 65531"])
    assert replies == ["ok", "ok", "ok", "err queue is not bound"]
