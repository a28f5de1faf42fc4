"""Remove everything fogify-net ever made on this machine, by its marks only.

For the remains of a crash: containers labelled `fogify-net` and the named
volumes a deploy made (`fogify-net=volume`), interfaces whose
alias starts with `fogify-net:`, Open vSwitch bridges with our external id
(and `fgn-` name), iptables rules with the `fogify-net` comment and our own
chains, the `fogify_net` and `fogify_net_flows` nftables tables, Mininet
shells of our nodes, stress runs in our cgroups, helpers named in our pid
files and our delay distribution tables in tc's lib dir (`fogify-net-*.dist`).
On a Swarm node also what a killed agent left (`remove_swarm_leftovers`): its
delay helpers by their pid files and the rules that fed them in Docker's
overlay namespaces. Nothing is matched by a broad process name or an interface prefix alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from pathlib import Path

from ..compile.flows import FLOW_TABLE, flow_teardown
from ..compile.naming import ALIAS, LABEL, VOLUME_LABEL
from ..compile.netfilter import (
    CHAIN_DOWN,
    CHAIN_UP,
    COMMENT,
    NFT_TABLE,
    bridge_rules,
    delay_rules_teardown,
    iptables_jumps,
    nft_teardown,
)
from .distributions import remove_tc_tables
from .kernel import KernelError, ip_batch, iptables_delete_chain, iptables_remove, run
from .ovs import delete_bridges, our_bridges

log = logging.getLogger(__name__)

DOCKER_EXEC_ROOT = "/var/run/docker"
SWARM_HELPER_PID = re.compile(r"fogify-delayd-[0-9a-z]{10}\.pid")  # a Swarm agent's helper of one overlay network
OVERLAY_NETNS = re.compile(r"\d+-[0-9a-z]{10}")  # Docker's namespace of an overlay network, <n>-<network id[:10]>
_SHELL = re.compile(r"^mininet:(fgnh\d+|fgn-[A-Za-z0-9_-]+|fgnv-[A-Za-z0-9_.-]+)\Z")  # fgnv-: containernet's


def cleanup(run_dir: str = "/run/fogify-net", keep_apis: bool = False) -> list[str]:
    """Remove every leftover; returns what was removed, one line each.

    With `keep_apis`, API daemons named in pid files are left running (a deploy
    that clears the leftovers of a dead run must not stop another, idle API).
    """
    removed: list[str] = []
    removed += _kill_processes(run_dir, keep_apis)
    removed += _remove_containers()
    removed += _remove_volumes()
    removed += _remove_ovs_bridges()
    removed += _remove_interfaces()
    removed += _remove_rules()
    removed += remove_tc_tables()
    removed += remove_swarm_leftovers(run_dir, DOCKER_EXEC_ROOT)
    return removed


def remove_swarm_leftovers(run_dir: str | Path, exec_root: str | Path) -> list[str]:
    """What an earlier Swarm agent of this node left: the delay helpers named in its pid files in
    `run_dir` (`fogify-delayd-<network>.pid`; a killed agent's helpers end at their stdin's EOF, but
    one may be stuck or the file left), and our delay rules in the overlay namespaces of the daemon
    whose exec root is `exec_root`. Only these names; the rest of the namespaces is Docker's."""
    removed = []
    for pid_file in sorted(Path(run_dir).glob("fogify-delayd-*.pid")):
        if not SWARM_HELPER_PID.fullmatch(pid_file.name):
            continue
        try:
            pid = int(pid_file.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            comm = ""
        if comm == "fogify-delayd":
            _kill(pid)
            removed.append(f"process {pid} ({comm}, {pid_file.name})")
        pid_file.unlink(missing_ok=True)
    netns_dir = Path(exec_root) / "netns"
    for netns in sorted(netns_dir.iterdir()) if netns_dir.is_dir() else []:
        if OVERLAY_NETNS.fullmatch(netns.name) and remove_delay_rules(str(netns)):
            removed.append(f"delay rules in {netns}")
    return removed


def remove_delay_rules(netns: str) -> bool:
    """Our delay chains and every jump into them in the namespace mounted at `netns`; False if none."""
    enter = ["nsenter", f"--net={netns}", "--"]
    teardown = delay_rules_teardown(run([*enter, "iptables-save", "-t", "mangle"], check=False))
    if teardown is None:
        return False
    run([*enter, "iptables-restore", "--noflush"], teardown)
    return True


def find_leftovers() -> list[str]:
    """What carries our marks on this machine now (containers, interfaces, tables, rules), one line each."""
    found = []
    try:
        from .containers import docker_client

        found += [f"container {c.name}" for c in
                  docker_client().containers.list(all=True, filters={"label": f"{LABEL}=1"})]
    except Exception as error:  # no Docker: nothing of ours can run there either
        log.debug("cannot list containers: %s", error)
    found += [f"interface {name}" for name in _our_interfaces()]
    found += [f"Open vSwitch bridge {name}" for name in our_bridges() if f"interface {name}" not in found]
    tables = run(["nft", "list", "tables"], check=False).split()
    found += [f"nftables table {t}" for t in (NFT_TABLE, FLOW_TABLE) if t in tables]
    return found


def _kill_processes(run_dir: str, keep_apis: bool = False) -> list[str]:
    """Mininet shells of our nodes, stress runs in our cgroups, helpers from our pid files."""
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        ours = any(_SHELL.match(w) for w in words) or "/fogify-stress-" in cgroups
        if ours and int(proc.name) != os.getpid():
            _kill(int(proc.name))
            killed.append(f"process {proc.name} ({' '.join(words)[:60]})")
    for pid_file in Path(run_dir).glob("*.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            pid_file.unlink(missing_ok=True)
            continue
        if keep_apis and not comm.startswith("fogify-delayd"):
            continue
        if comm.startswith(("fogify-delayd", "fogify-net")) and pid != os.getpid():
            _kill(pid)
            killed.append(f"process {pid} ({comm}, {pid_file.name})")
        pid_file.unlink(missing_ok=True)
    return killed


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(20):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_volumes() -> list[str]:
    """Named volumes that a deploy made (their containers are gone by now)."""
    try:
        from .containers import docker_client

        volumes = docker_client().volumes.list(filters={"label": f"{LABEL}={VOLUME_LABEL}"})
    except Exception as error:
        log.warning("cannot list volumes: %s", error)
        return []
    removed = []
    for volume in volumes:
        try:
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
        except Exception as error:
            log.warning("cannot remove volume %s: %s", volume.name, error)
    return removed


def _remove_containers() -> list[str]:
    try:
        from .containers import docker_client

        containers = docker_client().containers.list(all=True, filters={"label": f"{LABEL}=1"})
    except Exception as error:  # no Docker: nothing of ours can run there either
        log.warning("cannot list containers: %s", error)
        return []
    removed = []
    for container in containers:
        try:
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        except Exception as error:
            log.warning("cannot remove %s: %s", container.name, error)
    _remove_stress_cgroups()
    return removed


def _remove_stress_cgroups() -> None:
    for directory in Path("/sys/fs/cgroup").glob("*/docker/*/fogify-stress-*"):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _our_interfaces() -> list[str]:
    ours = []
    for device in Path("/sys/class/net").iterdir():
        try:
            alias = (device / "ifalias").read_text().strip()
        except OSError:
            continue
        if alias.startswith(f"{ALIAS}:"):
            ours.append(device.name)
    return sorted(ours)


def _remove_ovs_bridges() -> list[str]:
    """From the OVS database first: a bridge deleted only in the kernel would come back."""
    ours = our_bridges()
    try:
        delete_bridges(ours)
    except KernelError as error:
        log.warning("cannot delete Open vSwitch bridges %s: %s", ", ".join(ours), error)
        return []
    return [f"Open vSwitch bridge {name}" for name in ours]


def _remove_interfaces() -> list[str]:
    """Bridges and switch ports carry the alias `fogify-net:...`; deleting a port deletes its pair."""
    ours = _our_interfaces()
    ip_batch([f"link del {name}" for name in ours], force=True)
    return [f"interface {name}" for name in ours]


def _remove_rules() -> list[str]:
    removed = []
    rules = [*bridge_rules(), *iptables_jumps()]
    for table, chain, rule in rules:
        if f"--comment {COMMENT}" in run(["iptables", "-w", "-t", table, "-S", chain], check=False):
            iptables_remove(table, chain, rule)
            removed.append(f"iptables {table} {chain} rule")
    for chain in (CHAIN_UP, CHAIN_DOWN):
        if iptables_delete_chain("mangle", chain):
            removed.append(f"iptables mangle chain {chain}")
    tables = run(["nft", "list", "tables"], check=False).split()
    for table, teardown in ((NFT_TABLE, nft_teardown()), (FLOW_TABLE, flow_teardown())):
        if table in tables:
            run(["nft", "-f", "-"], teardown, check=False)
            removed.append(f"nftables table {table}")
    return removed
