"""An Open vSwitch switch per network: Mininet's OVSSwitch, standalone or under a remote controller.

Standalone (no controller given), each bridge is a MAC-learning switch of its
own, as a Linux bridge is. Given a controller address, the bridges connect to
it with fail_mode secure: the controller decides what is forwarded, and
without it nothing is. The bridges are made in one ovs-vsctl transaction, the
ports attached in another once the veth pairs exist (compile.links makes them
without a master), as are both ends of a cable between two switches (a veth
pair). Rates and netem's delay and loss are tc on the veth ends, as with Linux
bridges; partitions and firewall rules filter on the ports'
ingress (a netdev table), since OVS's datapath bypasses bridge netfilter.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from mininet.node import OVSSwitch

from ...compile.naming import ALIAS
from ...host.kernel import ip_batch
from ...host.ovs import EXTERNAL_ID, delete_bridges, vsctl
from .dockerhost import lean_shell

DEFAULT_CONTROLLER_PORT = 6653


def controller_target(address: str) -> str:
    """An OpenFlow controller's address as OVS wants it: `tcp:IP:PORT` (or `ssl:`).

    Accepts `IP`, `IP:PORT` and `tcp:IP:PORT`; raises ValueError naming the problem.
    """
    text = address.strip()
    protocol = "tcp"
    for prefix in ("tcp:", "ssl:"):
        if text.startswith(prefix):
            protocol, text = prefix[:-1], text[len(prefix):]
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    try:
        ip = ipaddress.IPv4Address(host)
        number = int(port) if port else DEFAULT_CONTROLLER_PORT
    except ValueError:
        raise ValueError(f"controller address {address!r} is not IP, IP:PORT or tcp:IP:PORT") from None
    if not 0 < number < 65536:
        raise ValueError(f"controller port {number} is out of range 1-65535")
    return f"{protocol}:{ip}:{number}"


def datapath_id(name: str) -> str:
    """16 hex digits from the bridge's name (Mininet derives one from digits in the name, which ours may lack)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


class FogOVSSwitch(OVSSwitch):
    """Mininet's OVSSwitch with our marks, made and removed in batches."""

    def __init__(self, name: str, network: str | None = None, controller: str | None = None, **params: Any):
        params.setdefault("inNamespace", False)
        self.network = network or name
        self.controller = controller_target(controller) if controller else None
        super().__init__(name, dpid=datapath_id(name), failMode="secure" if self.controller else "standalone",
                         **params)

    def _popen(self, cmd: list[str], **params: Any):
        """Mininet's root-namespace shell of the switch, started without mnexec (see DockerHost._popen)."""
        if self.shell is None:
            cmd, params = lean_shell(cmd, params)
        return super()._popen(cmd, **params)

    def connected(self) -> bool:
        return True

    def vsctl_args(self) -> list[str]:
        """This bridge's part of the one ovs-vsctl transaction that makes them all."""
        args = ["--", "--if-exists", "del-br", self.name, "--", "add-br", self.name,
                "--", "set", "bridge", self.name, *self.bridgeOpts().split(),
                f"external-ids:{EXTERNAL_ID}={self.network}"]
        if self.controller:
            args += ["--", "set-controller", self.name, self.controller]
        return args

    def start(self, _controllers: Any = ()) -> None:
        self.batchStartup([self])

    def stop(self, deleteIntfs: bool = True) -> None:
        self.batchShutdown([self])

    @classmethod
    def batchStartup(cls, switches: list[FogOVSSwitch], run: Any = None) -> list[FogOVSSwitch]:
        if switches:
            vsctl([arg for s in switches for arg in s.vsctl_args()])
            ip_batch([line for s in switches for line in (f"link set {s.name} alias {ALIAS}:{s.network}",
                                                          f"link set {s.name} up")])
        return switches

    @classmethod
    def batchShutdown(cls, switches: list[FogOVSSwitch], run: Any = None) -> list[FogOVSSwitch]:
        delete_bridges([s.name for s in switches])
        return switches

    @staticmethod
    def attach_ports(ports: dict[str, str]) -> None:
        """Attach switch-side veth ends to their bridges ({port: bridge}), replacing a stale record of
        the same name (a restarted instance's port vanished with its namespace, its record did not)."""
        args: list[str] = []
        for port, bridge in ports.items():
            args += ["--", "--if-exists", "del-port", port, "--", "add-port", bridge, port]
        if args:
            vsctl(args)
