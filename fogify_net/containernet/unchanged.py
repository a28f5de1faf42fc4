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

import runpy
import sys
from pathlib import Path

import mininet.net
import mininet.node
import mininet.topolib

from ..backends.local import manager as _local_backend  # noqa: F401 - see install_aliases
from .net import Containernet, Docker
from .topolib import ContainerTreeTopo, TreeContainerNet

ALIASES = {  # module -> {name the scripts import: ours}
    mininet.net: {"Containernet": Containernet, "Mininet": Containernet},
    mininet.node: {"Docker": Docker},
    mininet.topolib: {"TreeContainerNet": TreeContainerNet, "ContainerTreeTopo": ContainerTreeTopo},
}


def install_aliases() -> None:
    """Make this process's mininet modules give fogify-net's classes for the names above.

    fogify-net's own modules that build on Debian's Mininet (the local backend runs the emulation on
    mininet.net.Mininet) are imported above, before this runs, so they keep Debian's classes."""
    for module, names in ALIASES.items():
        for name, value in names.items():
            setattr(module, name, value)


def run_script(path: str | Path, args: list[str]) -> None:
    """Run the script at `path` as `python path args...` would, with the aliases installed; its SystemExit
    (a script's sys.exit) passes through."""
    script = Path(path)
    if not script.is_file():
        raise FileNotFoundError(f"{path}: no such script")
    install_aliases()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
