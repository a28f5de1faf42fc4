"""A Linux-bridge switch and prepared links for Mininet, created in batches.

Mininet's LinuxBridge needs brctl, wants every port named after the switch
and deletes a bridge of the same name before creating its own. FogBridge uses
`ip link` and one batch for all bridges. PreparedLink registers a veth pair
that fogify-net already created in a batch, so Mininet knows the topology
without one shell round trip per interface.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mininet.link import Intf, Link
from mininet.node import Switch

from ...compile.links import bridge_commands
from ...host.kernel import ip_batch
from .dockerhost import lean_shell


class FogBridge(Switch):
    """A Linux bridge without STP, forwarding at once; no controller needed."""

    def __init__(self, name: str, dpid: str | None = None, **params: Any):
        params.setdefault("inNamespace", False)
        super().__init__(name, dpid=dpid or "1", **params)

    def connected(self) -> bool:
        return True

    def _popen(self, cmd: list[str], **params: Any):
        """Mininet's root-namespace shell of the switch, started without mnexec (see DockerHost._popen)."""
        if self.shell is None:
            cmd, params = lean_shell(cmd, params)
        return super()._popen(cmd, **params)

    def create_commands(self) -> list[str]:
        return bridge_commands(self.name, self.params.get("network", self.name))

    def port_commands(self) -> list[str]:
        return [f"link set {intf.name} master {self.name} up" for intf in self.intfList() if intf.name != "lo"]

    def start(self, _controllers: Iterable = ()) -> None:
        self.batchStartup([self])

    def stop(self, deleteIntfs: bool = True) -> None:
        self.batchShutdown([self])
        super().stop(deleteIntfs=False)

    @classmethod
    def batchStartup(cls, switches: list[FogBridge], prepared: bool = False) -> list[FogBridge]:
        """Create the bridges and attach their ports in one batch (`prepared`: they already exist)."""
        if not prepared:
            ip_batch([line for s in switches for line in s.create_commands() + s.port_commands()])
        return switches

    @classmethod
    def batchShutdown(cls, switches: list[FogBridge]) -> list[FogBridge]:
        ip_batch([f"link del {s.name}" for s in switches], force=True)
        return switches


class PreparedIntf(Intf):
    """An interface that exists already; Mininet only records its name and address."""

    def config(self, ip: str | None = None, mac: str | None = None, **_params: Any) -> dict:
        if ip:
            self.ip, self.prefixLen = ip.split("/")
        self.mac = mac
        return {}

    def delete(self) -> None:
        """Nothing to do: the veth pair vanishes with the container's namespace."""


class PreparedLink(Link):
    """A host-to-switch veth pair made beforehand (see compile.links)."""

    def __init__(self, node1, node2, **params: Any):
        params.update(fast=True, intf=PreparedIntf)
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, *args: Any, **kwargs: Any) -> None:
        """The pair was created in a batch already."""
