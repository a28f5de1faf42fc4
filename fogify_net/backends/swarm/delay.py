"""Delay and jitter for Swarm tasks: the user-space delay line on each overlay network's bridge.

On every node, Docker keeps one network namespace per overlay network with a
bridge `br0` (each local task's veth is a port of it) beside `vxlan0`. That
namespace is the node's switch for the network, as a Linux bridge is for the
local backend, so delay goes where the local backend's central variant puts
it: NFQUEUE rules with `physdev-in <port>` (what the task sends: its uplink)
and `physdev-out <port>` (what it receives: its downlink), narrowed by `-d` or
`-s` for a `links` rule's peer, served by one `fogify-delayd` entered into
that namespace (queues are per namespace). The rules and queues are the local
backend's (emulation/delayqueues.py); only the namespace differs.

Not in the task's own namespace: a delay line there holds packets the sending
TCP socket still owns, and TCP Small Queues throttle the flow (measured with a
prototype: under 1 Mbit/s through 50 ms). Past the veth the socket has let go.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ...compile.shaping import InterfaceShaping
from ...host.cleanup import remove_delay_rules
from ...host.delayline import DelayLine
from ...host.delayqueues import DelayQueues
from ...host.kernel import run
from ...model.schema import DelayDistribution

log = logging.getLogger(__name__)


def in_namespace(netns: str | Path, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns}", "--", *argv]


def network_namespace(network_id: str, exec_root: str | Path = "/var/run/docker") -> str:
    """Docker's namespace of an overlay network on this node, `<exec-root>/netns/<n>-<id[:10]>`,
    found among the mounts (it exists while a local task uses the network). The exec root tells
    this node's daemon from others that share the mounts (the test cluster's daemons do)."""
    root = str(Path(exec_root).resolve())
    pattern = re.compile(rf"^{re.escape(root)}/netns/\d+-{re.escape(network_id[:10])}$")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if pattern.search(point):
                found.append(point)
    if not found:
        raise LookupError(f"no namespace of network {network_id[:10]} on this node")
    return sorted(found)[-1]


def bridge_port(netns: str, ifindex: int) -> str:
    """Name of the interface with index `ifindex` in the namespace file `netns`."""
    for link in json.loads(run(in_namespace(netns, ["ip", "-json", "link", "show"]))):
        if link["ifindex"] == ifindex:
            return link["ifname"]
    raise LookupError(f"no interface {ifindex} in {netns}")


class NetnsDelayLine(DelayLine):
    """A fogify-delayd in another network namespace (nsenter execs it: the pid we supervise is the helper's)."""

    def __init__(self, netns: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.netns = netns

    def _spawn(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        assert self.binary is not None
        self._proc = subprocess.Popen(in_namespace(self.netns, [self.binary]), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                      start_new_session=True)
        self._buf = b""
        self._started_at = time.monotonic()
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self._prioritise(self._proc.pid)
        threading.Thread(target=self._log_stderr, args=(self._proc,), name=f"{self.name}-stderr", daemon=True).start()


class NetworkDelay:
    """The delay of every local task on one overlay network: its rules and its helper."""

    def __init__(self, network_id: str, run_dir: str | Path, exec_root: str | Path = "/var/run/docker"):
        self.network_id = network_id
        self.netns = network_namespace(network_id, exec_root)
        # An earlier agent's rules (it was killed or restarted; its helper ended with it): our first
        # apply adds the jumps into our chains, which would otherwise come twice.
        if remove_delay_rules(self.netns):
            log.info("removed the delay rules an earlier agent left for network %s", network_id[:10])
        self.line = NetnsDelayLine(self.netns, run_dir=run_dir, name=f"fogify-delayd-{network_id[:10]}")
        self.ports: dict[str, InterfaceShaping] = {}  # bridge port -> the wanted shaping of its task
        # Queues are per namespace. Bypass: if the agent and its helper die, the overlay still carries traffic.
        self.queues = DelayQueues(self.line, self._restore, first_queue=1)
        self._jumps = False

    def port_of(self, ifindex: int) -> str:
        return bridge_port(self.netns, ifindex)

    def set(self, port: str, shaping: InterfaceShaping) -> None:
        self.ports[port] = shaping

    def drop(self, port: str) -> None:
        self.ports.pop(port, None)

    def apply(self, distributions: Mapping[str, DelayDistribution] | None = None) -> None:
        """Rules and queues for the ports that need a delay (per peer too); no helper when none does.

        `distributions` holds the tables of the custom delay distributions the ports' shaping names."""
        wanted = any(q.needs_delay for s in self.ports.values() for q in s.uplink.all() + s.downlink.all())
        if wanted and not self.line.alive():
            self.queues.clear()  # a new helper has no queues
            self.line.start()
        self.queues.apply(self.ports, jumps=not self._jumps, distributions=distributions)
        self._jumps = True
        if not wanted and self.line.alive():
            self.line.stop()

    def stop(self) -> None:
        self.line.stop()

    def _restore(self, rules: str) -> None:
        run(in_namespace(self.netns, ["iptables-restore", "--noflush"]), rules)
