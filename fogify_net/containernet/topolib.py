"""Containernet's tree of Docker hosts (its mininet.topolib additions), and Mininet's TreeNet, on fogify-net."""

from __future__ import annotations

from typing import Any

from mininet.topo import Topo

from .net import Containernet, Docker


class ContainerTreeTopo(Topo):
    """A tree of switches `depth` levels deep, `fanout` children each; the leaves are Docker hosts h1..hN."""

    def build(self, depth: int = 1, fanout: int = 2, dimage: str = "ubuntu:trusty") -> None:
        self._hosts, self._switches = 0, 0
        self._subtree(depth, fanout, dimage)

    def _subtree(self, depth: int, fanout: int, dimage: str) -> str:
        if depth == 0:
            self._hosts += 1
            return self.addHost(f"h{self._hosts}", cls=Docker, dimage=dimage)
        self._switches += 1
        switch = self.addSwitch(f"s{self._switches}")
        for _ in range(fanout):
            self.addLink(switch, self._subtree(depth - 1, fanout, dimage))
        return switch


def TreeContainerNet(depth: int = 1, fanout: int = 2, dimage: str = "ubuntu:trusty",  # noqa: N802 - Containernet's
                     **params: Any) -> Containernet:
    """Containernet's convenience function: a Containernet of a ContainerTreeTopo."""
    return Containernet(topo=ContainerTreeTopo(depth, fanout, dimage), **params)


def TreeNet(depth: int = 1, fanout: int = 2, **params: Any) -> Containernet:  # noqa: N802 - Mininet's name
    """Mininet's convenience function (mininet.topolib.TreeNet): a network of Mininet's TreeTopo, here."""
    from mininet.topolib import TreeTopo

    return Containernet(topo=TreeTopo(depth, fanout), **params)
