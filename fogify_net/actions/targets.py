"""Which instances and networks an action hits, with one set of errors for every action.

`label` means every replica, `label.N` exactly that replica, and `instances`
caps the count (lowest slots first). Fogify matched substrings, so
`mec-svc-1` also hit `mec-svc-10`; here it cannot.

Errors: a name the deployment does not know (label, replica, network) is
NotFound (404); a known instance that is not on the network the action names
is BadRequest (400), naming the parameter.
"""

from __future__ import annotations

from ..compile.plan import InstancePlan, Plan, SwitchLinkPlan
from ..errors import BadRequest, NotFound
from ..model.actions import Target
from ..model.errors import shown


def known_label(plan: Plan, label: str) -> str:
    if plan.model.blueprint(label) is None:
        known = ", ".join(b.label for b in plan.model.blueprints)
        raise NotFound(f"unknown label {shown(label)} (known: {known})")
    return label


def known_network(plan: Plan, network: str) -> str:
    if network not in plan.networks:
        raise NotFound(f"unknown network {shown(network)} (known: {', '.join(plan.networks)})")
    return network


def resolve(plan: Plan, target: Target) -> list[InstancePlan]:
    """The instances `target` names; at least one."""
    known_label(plan, target.label)
    instances = plan.instances_of(target.label)
    if target.slot is not None:
        instances = [i for i in instances if i.slot == target.slot]
        if not instances:
            running = ", ".join(i.name for i in plan.instances_of(target.label)) or "none"
            raise NotFound(f"no instance {target} (running: {running})")
    if not instances:
        raise NotFound(f"label {shown(target.label)} has no running replicas")
    if target.count is not None:
        instances = instances[: target.count]
    return instances


def resolve_on_network(plan: Plan, target: Target, network: str) -> list[InstancePlan]:
    """The instances `target` names, each of them attached to `network`."""
    known_network(plan, network)
    instances = resolve(plan, target)
    missing = [i.name for i in instances if i.interface(network) is None]
    if missing:
        raise BadRequest(f"params.network: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                         f"not on network {shown(network)}")
    return instances


def move_sources(plan: Plan, instances: list[InstancePlan], to: str, source: str | None
                 ) -> tuple[dict[str, list[InstancePlan]], list[str]]:
    """The network each instance leaves to join `to`, grouped; and those already on `to` (nothing to do).

    Without `source`, an instance must be on exactly one network. An instance on
    `to` already is left alone, unless it is on `source` too (which to leave is
    then unclear).
    """
    groups: dict[str, list[InstancePlan]] = {}
    unchanged = []
    for instance in instances:
        networks = [i.network for i in instance.interfaces]
        if to in networks:
            if source is not None and source in networks:
                raise BadRequest(f"params.to: {instance.name} is on both {source!r} and {to!r}")
            unchanged.append(instance.name)
            continue
        if source is None:
            if len(networks) != 1:
                raise BadRequest(f"params.from: {instance.name} is on {', '.join(networks) or 'no network'}: "
                                 "name the network it leaves")
            groups.setdefault(networks[0], []).append(instance)
        elif source not in networks:
            raise BadRequest(f"params.from: {instance.name} is not on network {source!r}")
        else:
            groups.setdefault(source, []).append(instance)
    return groups, unchanged


def resolve_switch_link(plan: Plan, a: str, b: str) -> SwitchLinkPlan:
    """The cable between switches `a` and `b` (either order); NotFound for unknown switches or no cable."""
    for switch in (a, b):
        if plan.switch_network(switch) is None:
            known = ", ".join(s for n in plan.networks.values() for s in n.switches)
            raise NotFound(f"unknown switch {shown(switch)} (known: {known})")
    link = plan.switch_link(a, b)
    if link is None:
        raise NotFound(f"no switch link joins {shown(a)} and {shown(b)}")
    return link
