"""Which instances an action hits: exact names, never substrings.

`label` means every replica, `label.N` exactly that replica, and `instances`
caps the count (lowest slots first). Fogify matched substrings, so
`mec-svc-1` also hit `mec-svc-10`; here it cannot.
"""

from __future__ import annotations

from ..compile.plan import InstancePlan, Plan
from ..errors import NotFound
from ..model.actions import Target


def resolve(plan: Plan, target: Target) -> list[InstancePlan]:
    if plan.model.blueprint(target.label) is None:
        known = ", ".join(b.label for b in plan.model.blueprints)
        raise NotFound(f"unknown label {target.label!r} (known: {known})")
    instances = plan.instances_of(target.label)
    if target.slot is not None:
        instances = [i for i in instances if i.slot == target.slot]
        if not instances:
            running = ", ".join(i.name for i in plan.instances_of(target.label)) or "none"
            raise NotFound(f"no instance {target} (running: {running})")
    if not instances:
        raise NotFound(f"label {target.label!r} has no running replicas")
    if target.count is not None:
        instances = instances[: target.count]
    return instances
