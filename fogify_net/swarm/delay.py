"""Delay and jitter for Swarm tasks: the user-space delay line on each overlay network's bridge.

On every node, Docker keeps one network namespace per overlay network with a
bridge `br0` (each local task's veth is a port of it) beside `vxlan0`. That
namespace is the node's switch for the network, as a Linux bridge is for the
local backend, so delay goes where the local backend's central variant puts
it: NFQUEUE rules with `physdev-in <port>` (what the task sends: its uplink)
and `physdev-out <port>` (what it receives: its downlink), served by one
`fogify-delayd` entered into that namespace (queues are per namespace).

Not in the task's own namespace: a delay line there holds packets the sending
TCP socket still owns, and TCP Small Queues throttle the flow (measured with a
prototype: under 1 Mbit/s through 50 ms). Past the veth the socket has let go.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from ..emulation.delayline import DelayLine
from ..emulation.kernel import run
from ..model.schema import QoS

log = logging.getLogger(__name__)

CHAIN = "FGN"


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


def delay_rules(queues: dict[str, tuple[int | None, int | None]], jumps: bool) -> str:
    """iptables-restore --noflush text for an overlay namespace: {port: (uplink queue, downlink queue)}.

    Our chains are declared, so a restore rewrites them whole; `jumps` adds the
    rules that lead to them, the first time only.
    """
    lines = ["*mangle", f":{CHAIN}-UP - [0:0]", f":{CHAIN}-DOWN - [0:0]"]
    for port, (up, down) in sorted(queues.items()):
        if up is not None:
            lines.append(f"-A {CHAIN}-UP -m physdev --physdev-in {port} -j NFQUEUE --queue-num {up} --queue-bypass")
        if down is not None:
            lines.append(f"-A {CHAIN}-DOWN -m physdev --physdev-out {port} "
                         f"-j NFQUEUE --queue-num {down} --queue-bypass")
    if jumps:
        lines += [f"-A PREROUTING -j {CHAIN}-UP", f"-A POSTROUTING -j {CHAIN}-DOWN"]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


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
        try:
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, self.nice)
        except OSError as exc:
            log.warning("cannot set fogify-delayd's nice value to %d: %s", self.nice, exc)
        threading.Thread(target=self._log_stderr, args=(self._proc,), name=f"{self.name}-stderr", daemon=True).start()


class NetworkDelay:
    """The delay of every local task on one overlay network: its rules and its helper."""

    def __init__(self, network_id: str, run_dir: str | Path, exec_root: str | Path = "/var/run/docker"):
        self.network_id = network_id
        self.netns = network_namespace(network_id, exec_root)
        self.line = NetnsDelayLine(self.netns, run_dir=run_dir, name=f"fogify-delayd-{network_id[:10]}")
        self.ports: dict[str, tuple[QoS, QoS]] = {}  # port -> (uplink, downlink) wanted
        self.queues: dict[str, tuple[int, int]] = {}  # port -> (uplink queue, downlink queue)
        self._jumps = False
        self._next = 1

    def port_of(self, ifindex: int) -> str:
        return bridge_port(self.netns, ifindex)

    def set(self, port: str, uplink: QoS, downlink: QoS) -> None:
        self.ports[port] = (uplink, downlink)

    def drop(self, port: str) -> None:
        self.ports.pop(port, None)

    def apply(self) -> None:
        """Rules for the ports that need a delay, and the helper's queues; no helper when none does."""
        wanted = {port: qos for port, qos in self.ports.items() if qos[0].needs_delay or qos[1].needs_delay}
        for port in wanted:
            if port not in self.queues:
                self.queues[port] = (self._next, self._next + 1)
                self._next += 2
        if wanted and not self.line.alive():
            self.line.start()
        rules = {}
        for port, (up, down) in wanted.items():
            q_up, q_down = self.queues[port]
            for queue, qos in ((q_up, up), (q_down, down)):
                if qos.needs_delay:
                    self.line.set_queue(queue, qos.delay * 1000, qos.jitter * 1000, qos.correlation, qos.distribution)
                elif queue in self.line.queues():
                    self.line.del_queue(queue)
            rules[port] = (q_up if up.needs_delay else None, q_down if down.needs_delay else None)
        run(in_namespace(self.netns, ["iptables-restore", "--noflush"]), delay_rules(rules, not self._jumps))
        self._jumps = True
        for port in [p for p in self.queues if p not in wanted]:
            for queue in self.queues.pop(port):
                self.line.del_queue(queue)
        if not wanted and self.line.alive():
            self.line.stop()

    def stop(self) -> None:
        self.line.stop()
