"""Client-side scenarios: turn the model's ``scenarios`` entries into a plan.

The whole scenario is checked before its first wait, so a typo in the last
action is reported at once instead of after minutes of an experiment.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ._actions import Action_type, parse_action_type
from ._errors import ExceptionFogifySDK

# The seed's (getting-started) forms of horizontal scaling.
_SCALING_FORMS = {
    "SCALE_OUT": "up",
    "SCALE_UP": "up",
    "SCALE_IN": "down",
    "SCALE_DOWN": "down",
}
_COUNT_KEYS = ("num-of-instances", "num_of_instances")


@dataclass(frozen=True)
class PlannedAction:
    """One step: wait ``time`` seconds after the previous step, then post the action.

    ``action_type`` is None for a no-op (``NOOP``), which only waits.
    """

    position: int
    time: float
    action_type: Action_type | None
    params: dict = field(default_factory=dict)


def select_scenario(scenarios: list, name: str | None) -> dict:
    """The scenario called ``name``, or the first one when ``name`` is None."""
    if not scenarios:
        raise ExceptionFogifySDK("There is no scenarios in the model (x-fogify.scenarios is empty).")
    if name is None:
        return scenarios[0]
    for scenario in scenarios:
        if isinstance(scenario, dict) and scenario.get("name") == name:
            return scenario
    known = ", ".join(str(s.get("name")) for s in scenarios if isinstance(s, dict))
    raise ExceptionFogifySDK(f"There is no scenario named {name!r} (known: {known}).")


def plan_scenario(scenario: dict) -> list[PlannedAction]:
    """The scenario's actions, checked and ordered by ``position``."""
    name = scenario.get("name", "?")
    entries = scenario.get("actions") or []
    if not isinstance(entries, list):
        raise ExceptionFogifySDK(f"scenarios[{name}].actions: expected a list")
    plan = [plan_action(entry, index, f"scenarios[{name}].actions[{index}]")
            for index, entry in enumerate(entries)]
    return sorted(plan, key=lambda step: step.position)


def plan_action(entry: Any, index: int, where: str = "action") -> PlannedAction:
    """One scenario entry as a :class:`PlannedAction`.

    Accepted forms: Fogify's ``action: {type, parameters}`` (parameters merged
    into ``params`` with ``instance_type`` and ``instances``), the plain string
    ``action: NOOP`` of the demo, and the seed's ``scale-in``/``scale-out``
    with ``num-of-instances``, which become horizontal scaling down/up.
    """
    if not isinstance(entry, dict):
        raise ExceptionFogifySDK(f"{where}: expected a mapping, got {entry!r}")
    wait = _wait_time(entry.get("time", 0), where)
    position = _position(entry.get("position", index), where)
    action = entry.get("action")
    if isinstance(action, str):
        action = {"type": action}
    if not isinstance(action, dict) or not action.get("type"):
        raise ExceptionFogifySDK(f"{where}.action.type: missing")
    type_name = str(action["type"]).strip()
    parameters = copy.deepcopy(action.get("parameters") or {})
    if not isinstance(parameters, dict):
        raise ExceptionFogifySDK(f"{where}.action.parameters: expected a mapping")
    key = type_name.upper().replace("-", "_")
    if key == "NOOP":
        return PlannedAction(position, wait, None, {})
    if key in _SCALING_FORMS:
        return PlannedAction(position, wait, Action_type.HORIZONTAL_SCALING,
                             _scaling_params(entry, parameters, _SCALING_FORMS[key]))
    try:
        kind = parse_action_type(type_name)
    except ExceptionFogifySDK as error:
        raise ExceptionFogifySDK(f"{where}.action.type: {error}") from None
    return PlannedAction(position, wait, kind, _target(entry, parameters))


def _scaling_params(entry: dict, parameters: dict, direction: str) -> dict:
    count = None
    for key in _COUNT_KEYS:
        if key in parameters:
            count = parameters.pop(key)
    if count is None:
        count = entry.get("instances", 1)
    params = {key: value for key, value in parameters.items() if key != "type"}
    params.update(instance_type=entry.get("instance_type"), instances=count, type=direction)
    return params


def _target(entry: dict, parameters: dict) -> dict:
    """Fogify puts the target next to the action's own parameters."""
    params = dict(parameters)
    if "instance_type" in entry:
        params["instance_type"] = entry["instance_type"]
    if "instances" in entry:
        params["instances"] = entry["instances"]
    return params


def _wait_time(value: Any, where: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ExceptionFogifySDK(f"{where}.time: expected seconds, got {value!r}") from None
    if seconds < 0:
        raise ExceptionFogifySDK(f"{where}.time: must not be negative, got {value!r}")
    return seconds


def _position(value: Any, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExceptionFogifySDK(f"{where}.position: expected an integer, got {value!r}") from None
