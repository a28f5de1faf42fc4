"""Containernet's API on fogify-net: a Containernet (or Mininet) script runs with its import line changed,

    from fogify_net.containernet import Containernet   # was: from mininet.net import Containernet

or unchanged with `fogify-net run script.py` (unchanged.py).

The script's other imports stay Debian's Mininet (mininet.node.Controller,
mininet.link.TCLink, mininet.cli.CLI, mininet.log, mininet.topo.Topo).
`Mininet` is the same class, for Mininet scripts (`from fogify_net.containernet
import Containernet as Mininet`, or `Mininet`); `Docker` stands for
Containernet's Docker host class (also given to Debian's mininet.node, where
Containernet's scripts import it from); `TreeContainerNet` and `ContainerTreeTopo`
for Containernet's topolib.

- net.py: the network classes; translate.py: a topology as a compose document;
  nodes.py: the Mininet nodes, interfaces and links that stand for the running
  deployment; runtime.py: the in-process controller and API; load.py: a
  topology file (a Topo or build(params)) for `fogify-net deploy topo.py`;
  remote.py: the CLI's view of a deployment the API daemon runs; unchanged.py:
  `fogify-net run`.
"""

import mininet.node

from .net import Containernet, Docker, FogMininet
from .topolib import ContainerTreeTopo, TreeContainerNet

Mininet = Containernet

# Containernet's scripts import its host class from its own mininet.node (`from mininet.node import
# Controller, Docker`), which Debian's Mininet lacks; once the changed import line has run, ours is there.
if not hasattr(mininet.node, "Docker"):
    mininet.node.Docker = Docker

__all__ = ["ContainerTreeTopo", "Containernet", "Docker", "FogMininet", "Mininet", "TreeContainerNet"]
