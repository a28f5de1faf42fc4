"""Mininet's linear topology: k switches in a chain, n hosts on each, every link shaped.

    h1 -- s1 -- s2 -- ... -- sk
                |            |
                h2           hk          (n=1; with n>1: h1s1, h2s1, ... on each switch)

Mininet's LinearTopo in Mininet's idiom (a Topo subclass), the links TCLinks: `bw` and `delay`
apply on each end's egress of every link, so from a host on s1 to a host on sk a packet sees
(k + 1) x delay one way, and the narrowest link holds the rate (set `switch_bw` lower than
`bw` to make the chain the bottleneck).

Parameters (fogify-net deploy topologies/linear --param k=4 --param delay=5ms ...):
  k          switches (default 3)
  n          hosts per switch (default 1)
  bw         host links' bandwidth in Mbit/s (default 100)
  switch_bw  switch-to-switch links' bandwidth in Mbit/s (default: bw)
  delay      every link's delay, each way (default 2ms)
"""

from __future__ import annotations

from mininet.link import TCLink
from mininet.topo import Topo


class Linear(Topo):
    def build(self, k: int = 3, n: int = 1, bw: float = 100, switch_bw: float | None = None,
              delay: str = "2ms") -> None:
        previous = None
        for i in range(1, k + 1):
            switch = self.addSwitch(f"s{i}")
            for j in range(1, n + 1):
                host = self.addHost(f"h{i}" if n == 1 else f"h{j}s{i}")
                self.addLink(host, switch, cls=TCLink, bw=bw, delay=delay)
            if previous:
                self.addLink(previous, switch, cls=TCLink, bw=switch_bw or bw, delay=delay)
            previous = switch
