"""Running batched kernel commands, in the root namespace or in a container's.

One process per batch (`ip -batch`, `tc -batch`, `nft -f`, `iptables-restore`)
instead of one per command: a hundred links cost one fork, not a hundred
(peers.md §5.2). Failures raise with the command and the kernel's words;
nothing is sent to /dev/null.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Sequence

log = logging.getLogger(__name__)


class KernelError(RuntimeError):
    """A kernel command failed; the message carries the tool's own error text."""


def run(argv: Sequence[str], stdin: str | None = None, timeout: float = 60, check: bool = True) -> str:
    """Run one command; return its stdout, raise KernelError on failure when `check`."""
    try:
        result = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except FileNotFoundError:
        raise KernelError(f"{argv[0]} is not installed (run scripts/install.sh)") from None
    except subprocess.TimeoutExpired:
        raise KernelError(f"{' '.join(argv)} did not finish within {timeout:g}s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise KernelError(f"{' '.join(argv)} failed: {detail}")
    return result.stdout


def in_netns(pid: int | None, argv: Sequence[str]) -> list[str]:
    """argv run inside the network namespace of `pid` (root namespace when None)."""
    if pid is None:
        return list(argv)
    return ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]


def ip_batch(lines: Sequence[str], pid: int | None = None, force: bool = False) -> None:
    """`ip -batch` in a namespace. With `force`, later lines still run after a failing one."""
    _batch("ip", lines, pid, force)


def tc_batch(lines: Sequence[str], pid: int | None = None, force: bool = False) -> None:
    _batch("tc", lines, pid, force)


def _batch(tool: str, lines: Sequence[str], pid: int | None, force: bool) -> None:
    if lines:
        _log_batch(tool, pid, lines)
        argv = [tool, *(["-force"] if force else []), "-batch", "-"]
        try:
            run(in_netns(pid, argv), "\n".join(lines) + "\n", check=not force)
        except KernelError as error:
            raise KernelError(name_failed_line(str(error), lines)) from None


_FAILED_LINE = re.compile(r"Command failed -:(\d+)")


def name_failed_line(message: str, lines: Sequence[str]) -> str:
    """The tool's error with the batch line it failed on (`ip -batch` says only "Command failed -:7").

    "RTNETLINK answers: File exists" alone does not say which interface exists;
    the line does: `link add name fgnh2e1 type veth ...`.
    """
    match = _FAILED_LINE.search(message)
    if match is None or not 0 < int(match[1]) <= len(lines):
        return message
    number = int(match[1])
    return f"{message} (line {number}: {lines[number - 1]})"


def nft_apply(ruleset: str) -> None:
    _log_batch("nft", None, ruleset.splitlines())
    run(["nft", "-f", "-"], ruleset)


def iptables_restore(text: str) -> None:
    """Rewrite only the chains the text declares (`--noflush` leaves every other rule alone)."""
    _log_batch("iptables-restore", None, text.splitlines())
    run(["iptables-restore", "--noflush"], text)


def iptables_ensure(table: str, chain: str, rule: str, position: int | None = None) -> bool:
    """Add `rule` to `chain` unless it is there; True when it was added."""
    spec = rule.split()
    if _exists(table, chain, spec):
        return False
    where = ["-I", chain, str(position)] if position else ["-A", chain]
    run(["iptables", "-w", "-t", table, *where, *spec])
    return True


def iptables_remove(table: str, chain: str, rule: str) -> None:
    """Delete every copy of `rule` from `chain`."""
    spec = rule.split()
    while _exists(table, chain, spec):
        run(["iptables", "-w", "-t", table, "-D", chain, *spec])


def _exists(table: str, chain: str, spec: list[str]) -> bool:
    return subprocess.run(["iptables", "-w", "-t", table, "-C", chain, *spec], capture_output=True).returncode == 0


def _log_batch(tool: str, pid: int | None, lines: Sequence[str]) -> None:
    if log.isEnabledFor(logging.DEBUG):
        where = f"netns of pid {pid}" if pid else "root netns"
        log.debug("%s in %s:\n  %s", tool, where, "\n  ".join(lines))


def iptables_delete_chain(table: str, chain: str) -> bool:
    """Flush and delete a chain of ours; False when it does not exist."""
    if f":{chain} " not in run(["iptables-save", "-t", table], check=False):
        return False
    run(["iptables", "-w", "-t", table, "-F", chain], check=False)
    run(["iptables", "-w", "-t", table, "-X", chain], check=False)
    return True
