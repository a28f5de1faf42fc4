"""Per-container /etc/hosts: the names an application uses to find its peers.

Names resolve only to addresses on networks the asking instance shares with
the target, as Swarm's DNS does: a car on edge-net-1 can resolve
`tasks.mec-svc-1.edge-net-1` but not `tasks.mec-svc-2.edge-net-2`. Names
without a network (`<label>`, `<label>.<n>`, `tasks.<label>`, the service
name) use the first network the two share, in the target's order.
"""

from __future__ import annotations

from .plan import InstancePlan, Plan

HEADER = (
    "# written by fogify-net; rewritten when instances come and go\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
)


def _names(target: InstancePlan, network: str, primary: bool) -> list[str]:
    names = [f"{target.name}.{network}", f"tasks.{target.label}.{network}"]
    if primary:
        names = [target.name, target.label, f"tasks.{target.label}", target.service.name] + names
    return names


def hosts_file(plan: Plan, instance: InstancePlan) -> str:
    """The hosts file of `instance`."""
    mine = {i.network for i in instance.interfaces}
    lines = []
    for target in sorted(plan.instances, key=lambda i: (i.label, i.slot)):
        shared = [i for i in target.interfaces if i.network in mine and i.ip is not None]
        for position, interface in enumerate(shared):
            names = _names(target, interface.network, primary=position == 0)
            lines.append(f"{interface.ip}\t{' '.join(dict.fromkeys(names))}")
    return HEADER + "\n".join(lines) + "\n"
