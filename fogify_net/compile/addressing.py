"""Subnets per network and addresses per instance.

Each x-fogify network gets its own subnet: the one the model gives, else the
/24 around its static addresses, else the next free block of the pool, sized
for growth. The first host address (.1) stays free for a future gateway.
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address, IPv4Network

from ..model.errors import ModelError, join
from ..model.schema import Model

DEFAULT_POOL = IPv4Network("10.100.0.0/16")
_ROOT = "x-fogify"


def network_sizes(model: Model) -> dict[str, int]:
    """Instances that join each network at deploy time."""
    sizes = {name: 0 for name in model.networks}
    for blueprint in model.blueprints:
        for attachment in blueprint.networks:
            sizes[attachment.network] += blueprint.replicas
    return sizes


def static_addresses(model: Model) -> dict[str, list[tuple[IPv4Address, str]]]:
    """Static ips per network, each with the field path that set it."""
    found: dict[str, list[tuple[IPv4Address, str]]] = {name: [] for name in model.networks}
    for i, blueprint in enumerate(model.blueprints):
        for j, attachment in enumerate(blueprint.networks):
            if attachment.ip is not None:
                path = join(join(join(join(_ROOT, "topology"), i), "networks"), j) + ".ip"
                found[attachment.network].append((attachment.ip, path))
    return found


def assign_subnets(model: Model, pool: IPv4Network = DEFAULT_POOL) -> dict[str, IPv4Network]:
    """One subnet per network; overlapping or unusable subnets and addresses are errors."""
    statics = static_addresses(model)
    sizes = network_sizes(model)
    subnets: dict[str, IPv4Network] = {}
    for i, network in enumerate(model.networks.values()):
        path = join(join(_ROOT, "networks"), i)
        if network.subnet is not None:
            subnets[network.name] = network.subnet
        elif statics[network.name]:
            first, first_path = statics[network.name][0]
            subnets[network.name] = IPv4Network(f"{first}/24", strict=False)
        else:
            continue
        _check_overlap(subnets, network.name, join(path, "subnet"))
        room = subnets[network.name].num_addresses - 3  # network, broadcast and the gateway's .1
        if sizes[network.name] > room:
            raise ModelError(join(path, "subnet"), f"{sizes[network.name]} instances join network "
                                                   f"{network.name!r}; its subnet {subnets[network.name]} has "
                                                   f"{room} addresses for them (.1 stays free)")
    for network in model.networks.values():
        if network.name in subnets:
            continue
        wanted = max(2 * sizes[network.name], network.capacity or 0, 200)
        prefix = min(24, 32 - math.ceil(math.log2(wanted + 3)))
        subnets[network.name] = _free_block(pool, prefix, subnets.values(), network.name)
    for name, addresses in statics.items():
        seen: dict[IPv4Address, str] = {}
        for address, path in addresses:
            subnet = subnets[name]
            if address not in subnet:
                raise ModelError(path, f"{address} is outside network {name!r}'s subnet {subnet}")
            if address in (subnet.network_address, subnet.broadcast_address):
                raise ModelError(path, f"{address} is the network or broadcast address of {subnet}")
            if address in seen:
                raise ModelError(path, f"{address} is already given at {seen[address]}")
            seen[address] = path
    return subnets


def _check_overlap(subnets: dict[str, IPv4Network], name: str, path: str) -> None:
    for other, subnet in subnets.items():
        if other != name and subnet.overlaps(subnets[name]):
            raise ModelError(path, f"subnet {subnets[name]} overlaps network {other!r}'s subnet {subnet}")


def _free_block(pool: IPv4Network, prefix: int, used, name: str) -> IPv4Network:
    prefix = max(prefix, pool.prefixlen)
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(other) for other in used):
            return candidate
    raise ModelError(f"{_ROOT}.networks", f"the address pool {pool} has no free /{prefix} left for network {name!r}")


class AddressBook:
    """Hands out host addresses of one subnet, never reusing one while another is free."""

    def __init__(self, subnet: IPv4Network, reserved: list[IPv4Address] = ()):
        self.subnet = subnet
        self.used: set[IPv4Address] = set(reserved)
        self._next = int(subnet.network_address) + 2  # .1 stays free for a gateway

    def take(self, address: IPv4Address | None = None) -> IPv4Address:
        if address is not None:
            self.used.add(address)
            return address
        first, last = int(self.subnet.network_address) + 2, int(self.subnet.broadcast_address) - 1
        for _ in range(last - first + 1):
            candidate = IPv4Address(self._next)
            self._next = self._next + 1 if self._next < last else first
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate
        raise ModelError("", f"subnet {self.subnet} has no free address left")

    def free(self) -> int:
        """Addresses `take` can still hand out."""
        first, last = int(self.subnet.network_address) + 2, int(self.subnet.broadcast_address) - 1
        return max(0, last - first + 1 - sum(1 for a in self.used if first <= int(a) <= last))

    def release(self, address: IPv4Address) -> None:
        self.used.discard(address)
