"""Open vSwitch on this machine: is it usable, and our bridges in its database.

`--switch ovs` needs three things that a stock kernel with Debian's
openvswitch-switch has: the openvswitch module, ovsdb-server answering on its
socket, and ovs-vswitchd. A bridge of ours carries the external id
`fogify-net=<network>` besides its `fgn-` name, so cleanup deletes exactly
ours from the database (deleting only the kernel device would leave the record,
and ovs-vswitchd would make the device again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .kernel import KernelError, run

log = logging.getLogger(__name__)

DB_SOCKET = Path("/var/run/openvswitch/db.sock")
EXTERNAL_ID = "fogify-net"
BRIDGE_PREFIX = "fgn-"
TIMEOUT_S = 10


def vsctl(args: Sequence[str], timeout: float = TIMEOUT_S) -> str:
    """One `ovs-vsctl` transaction; commands are separated by "--" items in `args`."""
    log.debug("ovs-vsctl %s", " ".join(args))
    return run(["ovs-vsctl", f"--timeout={int(timeout)}", *args], timeout=timeout + 5)


def unusable(kernel_module: bool) -> str | None:
    """Why an OVS switch cannot work here, or None when it can."""
    if not kernel_module:
        return ("this kernel has no openvswitch module (modprobe openvswitch fails; stock Debian and "
                "Ubuntu kernels have it)")
    if not DB_SOCKET.exists():
        return (f"ovsdb-server does not run ({DB_SOCKET} is missing): install and start openvswitch-switch "
                "(apt-get install openvswitch-switch; systemctl start openvswitch-switch)")
    try:
        vsctl(["show"], timeout=5)
    except KernelError as error:
        return f"Open vSwitch does not answer: {error}"
    return None


def our_bridges() -> list[str]:
    """Bridges in the OVS database that carry our name prefix and our external id."""
    if not DB_SOCKET.exists():
        return []
    try:
        names = vsctl(["list-br"], timeout=5).split()
    except KernelError as error:
        log.debug("cannot list OVS bridges: %s", error)
        return []
    ours = []
    for name in names:
        if name.startswith(BRIDGE_PREFIX) and vsctl(["br-get-external-id", name, EXTERNAL_ID], timeout=5).strip():
            ours.append(name)
    return ours


def delete_bridges(names: Sequence[str]) -> None:
    """Delete these bridges (and their ports) from the OVS database, in one transaction."""
    args: list[str] = []
    for name in names:
        args += ["--", "--if-exists", "del-br", name]
    if args:
        vsctl(args)
