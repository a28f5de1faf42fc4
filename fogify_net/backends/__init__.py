"""The backends that run a plan, by name (as Kathara's ManagerFactory), and their shared contract.

`create("local", plan, ...)` or `create("swarm", plan, manager_url=...)` gives
a Backend; the controller and the CLI use only this, so adding a backend is
one entry here. Each backend module is imported only when asked for: the
local one needs Mininet, the Swarm one the Docker SDK's swarm types.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .base import Backend, DeployError, Progress, Samples, StateCallback, TaskFacts

REGISTRY: dict[str, str] = {
    "local": "fogify_net.backends.local:LocalBackend",
    "swarm": "fogify_net.backends.swarm:SwarmBackend",
}


def backend_class(name: str) -> type[Backend]:
    try:
        module, _, attribute = REGISTRY[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown backend {name!r} (use {', '.join(REGISTRY)})") from None
    return getattr(import_module(module), attribute)


def create(name: str, plan, on_state: StateCallback | None = None, **options: Any) -> Backend:
    """A new, not yet deployed backend `name` for `plan`; `options` are that backend's own."""
    return backend_class(name)(plan, on_state=on_state, **options)


__all__ = ["REGISTRY", "Backend", "DeployError", "Progress", "Samples", "StateCallback", "TaskFacts",
           "backend_class", "create"]
