"""A tree of switches, `depth` levels deep with `fanout` children each; the leaves are Docker hosts h1..hN.

    depth=2, fanout=2:            s1
                          /                \\
                        s2                  s3
                      /    \\              /    \\
                    h1      h2          h3      h4

Mininet's TreeTopo in Mininet's own idiom (a Topo subclass), with every link a TCLink whose
bandwidth and delay apply on each of its ends' egress, as Mininet does: a packet from h1 to h4
crosses 4 links, so it sees 4 x delay one way. The whole tree is one layer-2 segment
(10.0.0.0/8, Mininet's addresses h1 = 10.0.0.1 ...).

Parameters (fogify-net deploy topologies/tree --param depth=3 --param fanout=2 ...):
  depth    levels of switches (default 2)
  fanout   children per switch (default 2)
  bw       each link's bandwidth in Mbit/s (default 100)
  delay    each link's delay, each way (default 1ms)
  image    the hosts' image (default fogify-net/base:latest)
"""

from __future__ import annotations

from mininet.link import TCLink
from mininet.topo import Topo

from fogify_net.containernet import Docker


class Tree(Topo):
    def build(self, depth: int = 2, fanout: int = 2, bw: float = 100, delay: str = "1ms",
              image: str = "fogify-net/base:latest") -> None:
        self.link_options = {"cls": TCLink, "bw": bw, "delay": delay}
        self.image = image
        self.host_count = self.switch_count = 0
        self.subtree(depth, fanout)

    def subtree(self, depth: int, fanout: int) -> str:
        if depth == 0:
            self.host_count += 1
            return self.addHost(f"h{self.host_count}", cls=Docker, dimage=self.image)
        self.switch_count += 1
        switch = self.addSwitch(f"s{self.switch_count}")
        for _ in range(fanout):
            self.addLink(switch, self.subtree(depth - 1, fanout), **self.link_options)
        return switch
