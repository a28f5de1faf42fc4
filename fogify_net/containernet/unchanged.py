"""Running a Containernet or Mininet script unchanged: `fogify-net run script.py [args]`.

Containernet's scripts import its classes from its fork of Mininet (`from
mininet.net import Containernet`, `from mininet.node import Docker`, `from
mininet.topolib import TreeContainerNet`), which Debian's Mininet lacks, and
Mininet's own scripts build on Open vSwitch and an OpenFlow controller, which
a kernel without the openvswitch module cannot run. Inside the script's own
process only, before it runs, those names of Debian's modules stand for
fogify-net's classes, so the script deploys on fogify-net as it would with its
import line changed. Nothing on the machine is changed: another Python process
importing mininet gets Debian's classes.
"""

from __future__ import annotations

import ast
import functools
import logging
import runpy
import signal
import sys
from pathlib import Path
from typing import Any

import mininet.examples.cluster
import mininet.net
import mininet.node
import mininet.topolib

from ..backends.local import manager as _local_backend  # noqa: F401 - see install_aliases
from .net import Containernet, Docker
from .refused import refuse
from .topolib import ContainerTreeTopo, TreeContainerNet, TreeNet

log = logging.getLogger(__name__)


class MininetCluster(Containernet):
    """Mininet's cluster edition (mininet.examples.cluster) on one machine: its nodes all on `localhost`
    run as any network here; a server elsewhere is refused (nodes placed over ssh)."""

    def __init__(self, *args: Any, servers: list | None = None, user: Any = None, placement: Any = None,
                 serverIP: Any = None, precheck: bool = True, **params: Any):  # noqa: N803 - Mininet's names
        elsewhere = [s for s in servers or [] if s not in (None, "", "localhost", "127.0.0.1")]
        if elsewhere:
            refuse("MininetCluster", f"servers {', '.join(map(repr, elsewhere))}: Mininet's cluster edition places "
                   "nodes on other machines over ssh; fogify-net runs a network on this machine only")
        self.servers = ["localhost"]
        super().__init__(*args, **params)


GUI_MODULES = {"Tkinter", "tkinter"}
SWITCH_CLASSES = (mininet.node.OVSSwitch, mininet.node.UserSwitch, mininet.node.IVSSwitch)

ALIASES = {  # module -> {name the scripts import: ours}
    mininet.net: {"Containernet": Containernet, "Mininet": Containernet},
    mininet.node: {"Docker": Docker},
    mininet.topolib: {"TreeContainerNet": TreeContainerNet, "ContainerTreeTopo": ContainerTreeTopo,
                      "TreeNet": TreeNet},
    mininet.examples.cluster: {"MininetCluster": MininetCluster},
}


def _ours(cls: type) -> bool:
    return any(c.__module__.startswith("fogify_net") for c in cls.__mro__)


def _guarded(init: Any) -> Any:
    """Mininet's Node constructor, refusing nodes a script makes itself, outside a network (Mininet's
    low-level API): they would run on Debian's Mininet directly, unshaped and never cleaned up."""

    @functools.wraps(init)
    def __init__(self, name: str, *args: Any, **params: Any) -> None:  # noqa: N807
        if not _ours(type(self)):
            kind = type(self).__name__
            if isinstance(self, mininet.node.Controller):
                refuse(f"{kind}({name!r})", "the script runs an OpenFlow controller process itself; fogify-net's "
                       "switches are Linux bridges that learn by themselves and this machine has no controller "
                       "binary (Mininet's `controller`, ovs-testcontroller) to run")
            if params.get("inNamespace") is False:
                refuse(f"{kind}({name!r})", "a node in this machine's own network namespace (inNamespace=False), "
                       "made with Mininet's low-level API: fogify-net keeps traffic between the hosts it creates")
            refuse(f"{kind}({name!r})", "the script makes nodes one by one with Mininet's low-level API; they "
                   "would run on Debian's Mininet directly, outside fogify-net (no deployment, shaping or "
                   "cleanup). `fogify-net run` runs networks built with Mininet()/Containernet() (addHost, "
                   "addSwitch, addLink, a Topo); run this script with python3 instead")
        init(self, name, *args, **params)

    __init__.fogify_net_guard = True
    return __init__


def install_aliases() -> None:
    """Make this process's mininet modules give fogify-net's classes for the names above, and refuse
    nodes made outside a network (see _guarded).

    fogify-net's own modules that build on Debian's Mininet (the local backend runs the emulation on
    mininet.net.Mininet) are imported above, before this runs, so they keep Debian's classes."""
    for module, names in ALIASES.items():
        for name, value in names.items():
            setattr(module, name, value)
    if not getattr(mininet.node.Node.__init__, "fogify_net_guard", False):
        mininet.node.Node.__init__ = _guarded(mininet.node.Node.__init__)
    for switch in SWITCH_CLASSES:  # `OVSKernelSwitch.setup()` (multitest.py) checks for an Open vSwitch
        switch.setup = classmethod(_nothing_to_set_up)


def _nothing_to_set_up(cls: type) -> None:
    """A Mininet switch class's setup(): the switches are fogify-net's bridges, nothing of its to check."""
    log.info("%s.setup(): nothing to set up; fogify-net's switches are Linux bridges", cls.__name__)


def _refuse_a_gui(script: Path) -> None:
    """A graphical script (Mininet's miniedit.py and consoles.py draw with Tk and open xterms) is
    refused before it runs: `fogify-net run` is for scripts that build a network and drive it."""
    try:
        tree = ast.parse(script.read_text(), str(script))
    except SyntaxError:
        return  # Python reports it when the script runs
    for node in ast.walk(tree):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name.split(".")[0] in GUI_MODULES for name in names):
            refuse(script.name, "a graphical script (it imports Tk): windows, consoles and xterms need an X11 "
                   "display, and fogify-net runs networks headless; build the network in a script, or in a "
                   "compose file, and use the CLI, the REST API or the SDK")


def run_script(path: str | Path, args: list[str]) -> None:
    """Run the script at `path` as `python path args...` would, with the aliases installed; its SystemExit
    (a script's sys.exit) passes through."""
    script = Path(path)
    if not script.is_file():
        raise FileNotFoundError(f"{path}: no such script")
    _refuse_a_gui(script)
    install_aliases()
    # `timeout`, `kill` or a CI runner's end: the script's network is undeployed as at its own exit
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
