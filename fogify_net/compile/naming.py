"""Names of everything fogify-net creates on the machine.

Kernel interface names are limited to 15 characters, so instance and network
names cannot be used directly; the deploy table shows the mapping. Every name
starts with a mark that cleanup matches exactly (see DEVELOPERS.md).
"""

from __future__ import annotations

import hashlib
import re

IFNAMSIZ = 15
PREFIX = "fgn"
FOGIFY_CONTAINER_PREFIX = "fogify_"  # Fogify's stack names its tasks fogify_<label>.<slot>
CONTAINERNET_CONTAINER_PREFIX = "mn."  # Containernet names a host's container mn.<host>
LABEL = "fogify-net"  # containers carry fogify-net=1
VOLUME_LABEL = "volume"  # named volumes a deploy made carry fogify-net=volume
ALIAS = "fogify-net"
SHELL_PREFIX = "mininet:"
DISTRIBUTION_PREFIX = "fogify-net-"  # tc's table files of custom delay distributions: <prefix><name>.dist

_BRIDGE_SAFE = re.compile(r"^[A-Za-z0-9_-]+\Z")
BRIDGE_PATTERN = re.compile(r"^fgn-[A-Za-z0-9_-]{1,11}\Z")
PORT_PATTERN = re.compile(r"^fgnh\d+e\d+\Z")
SWITCH_LINK_PATTERN = re.compile(r"^fgnl\d+[ab]\Z")
HOST_NODE_PATTERN = re.compile(r"^fgnh\d+\Z")


def bridge_name(network: str, taken: set[str] = frozenset()) -> str:
    """`fgn-<network>` when it fits, else a shortened name with a hash; unique among `taken`."""
    candidate = f"{PREFIX}-{network}"
    if len(candidate) <= IFNAMSIZ and _BRIDGE_SAFE.match(network) and candidate not in taken:
        return candidate
    digest = hashlib.sha1(network.encode()).hexdigest()
    for start in range(0, len(digest) - 4):
        candidate = f"{PREFIX}-{network[:6]}-{digest[start:start + 4]}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free bridge name for network {network!r}")


def netem_distribution(name: str, builtin: bool) -> str:
    """The name netem's `distribution` takes: a built-in table's own, else our table file's stem."""
    return name if builtin else f"{DISTRIBUTION_PREFIX}{name}"


def host_node_name(index: int) -> str:
    """The Mininet node name of instance number `index` (stable for the deployment's life)."""
    return f"{PREFIX}h{index}"


def port_name(index: int, interface: int) -> str:
    """The switch-side end of instance `index`'s interface number `interface`."""
    name = f"{PREFIX}h{index}e{interface}"
    if len(name) > IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return name


def switch_link_ports(index: int) -> tuple[str, str]:
    """The two ends of switch link number `index`: on its source switch, on its target switch."""
    name = f"{PREFIX}l{index}"
    if len(name) + 1 > IFNAMSIZ:
        raise ValueError(f"switch link number {index} needs a name longer than {IFNAMSIZ} characters")
    return f"{name}a", f"{name}b"


def container_name(instance: str, label: str) -> str:
    """The Docker name users of the tool they came from look for: `docker ps -f name=fogify_<label>`
    finds a blueprint's replicas as on Fogify's Swarm stack; `docker exec mn.d1` reaches a host
    named alone (a Mininet/Containernet host) as on Containernet.

    Names are for people and their scripts only: cleanup finds containers by the label
    `fogify-net=1`, never by name.
    """
    prefix = CONTAINERNET_CONTAINER_PREFIX if instance == label else FOGIFY_CONTAINER_PREFIX
    return f"{prefix}{instance}"


def instance_name(label: str, slot: int, single: bool = False) -> str:
    """`<label>.<slot>`; a single blueprint's one instance is named by the label alone (Mininet's host names)."""
    return label if single and slot == 1 else f"{label}.{slot}"
