"""Scenarios: timed actions, each validated when the model loads (so a broken one fails at deploy)."""

from __future__ import annotations

from typing import Any

from .actions import ACTION_TYPES, normalize, parse_action
from .errors import ModelError, join, shown
from .fields import known_keys, mapping, sequence, valid_name
from .limits import MAX_SCENARIO_S
from .schema import Model, Scenario, ScenarioAction
from .units import parse_count, parse_seconds


def parse_scenario(raw: Any, path: str, model: Model) -> Scenario:
    raw = mapping(raw, path, "a scenario")
    known_keys(raw, path, {"name", "actions"})
    name = valid_name(raw.get("name"), join(path, "name"))
    actions_path = join(path, "actions")
    actions = []
    error = None
    elapsed = 0.0
    for i, item in enumerate(sequence(raw.get("actions"), actions_path)):
        item_path = join(actions_path, i)
        item = mapping(item, item_path, "a scenario action")
        known_keys(item, item_path, {"time", "position", "instance_type", "instances", "action"})
        action = item.get("action")
        if isinstance(action, str):  # Fogify's demo writes action: "NOOP"
            action = {"type": action}
        action = mapping(action, join(item_path, "action"), "the action")
        known_keys(action, join(item_path, "action"), {"type", "parameters"})
        kind, parameters = normalize(str(action.get("type", "")), dict(action.get("parameters") or {}))
        if kind not in ACTION_TYPES:
            raise ModelError(
                join(join(item_path, "action"), "type"),
                f"unknown action type {shown(action.get('type'))} (use {', '.join(sorted(ACTION_TYPES))})",
            )
        time = parse_seconds(item.get("time", 0), join(item_path, "time"))
        elapsed += time
        if elapsed > MAX_SCENARIO_S:
            raise ModelError(join(item_path, "time"), f"the scenario would last {elapsed:g} s; "
                                                      f"at most {MAX_SCENARIO_S:g} s (7 days)")
        instances = None
        if item.get("instances") not in (None, ""):
            instances = parse_count(item["instances"], join(item_path, "instances"), minimum=1)
        instance_type = str(item.get("instance_type") or "")
        if kind != "noop":
            # Validate now, so a broken scenario fails at deploy, not minutes into an experiment.
            params = {**parameters, "instance_type": instance_type}
            if instances is not None:
                params.setdefault("instances", instances)
            try:
                parse_action(kind, params, join(join(item_path, "action"), "parameters"), model)
            except ModelError as problem:
                error = error or str(problem)
        actions.append(
            ScenarioAction(
                position=parse_count(item.get("position", i), join(item_path, "position")),
                time=time,
                instance_type=instance_type,
                instances=instances,
                type=kind,
                parameters=parameters,
            )
        )
    return Scenario(name=name, actions=tuple(sorted(actions, key=lambda a: a.position)), error=error)
