"""Scenarios: timed actions, each validated when the model loads (so a broken one fails at deploy).

A scenario may also give devices routes through networks:

    routes:
    - instance_type: car-workload-1     # a label (every replica) or label.N; instances caps the count
      overlap: 500ms                    # optional make-before-break overlap of each move
      route:
      - {at: 0s, network: edge-net-1}   # where the device is when the route begins
      - {at: 30s, network: edge-net-2}  # from here on each waypoint is a move from the previous one
      - {at: 60s, network: edge-net-1, overlap: 0}

`at` counts from the scenario's start. Each waypoint after the first becomes a
`move` action merged into the actions by time (positions are renumbered in
time order; at the same time the scenario's own actions come first).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .actions import ACTION_TYPES, normalize, parse_action
from .errors import ModelError, join, shown
from .fields import known_keys, mapping, sequence, valid_name
from .limits import MAX_SCENARIO_S
from .schema import Model, Scenario, ScenarioAction
from .units import parse_count, parse_seconds


def parse_scenario(raw: Any, path: str, model: Model) -> Scenario:
    raw = mapping(raw, path, "a scenario")
    known_keys(raw, path, {"name", "actions", "routes"})
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
    actions.sort(key=lambda a: a.position)
    routes_path = join(path, "routes")
    moves = [move for i, item in enumerate(sequence(raw.get("routes"), routes_path))
             for move in parse_route(item, join(routes_path, i), model)]
    if moves:
        actions = merge_moves(actions, moves)
    return Scenario(name=name, actions=tuple(actions), error=error)


def parse_route(raw: Any, path: str, model: Model) -> list[tuple[float, ScenarioAction]]:
    """One device's route: (time from the scenario's start, move action) per waypoint after the first."""
    raw = mapping(raw, path, "a route")
    known_keys(raw, path, {"instance_type", "instances", "overlap", "route"})
    target = {"instance_type": raw.get("instance_type")}
    instances = None
    if raw.get("instances") not in (None, ""):
        instances = parse_count(raw["instances"], join(path, "instances"), minimum=1)
        target["instances"] = instances
    overlap = raw.get("overlap", 0)
    waypoints_path = join(path, "route")
    waypoints = sequence(raw.get("route"), waypoints_path)
    if len(waypoints) < 2:
        raise ModelError(waypoints_path, "a route needs at least two waypoints ({at, network}): where it starts "
                                         "and where it goes")
    moves = []
    previous_at, previous_network = -1.0, None
    for j, waypoint in enumerate(waypoints):
        waypoint_path = join(waypoints_path, j)
        waypoint = mapping(waypoint, waypoint_path, "a waypoint")
        known_keys(waypoint, waypoint_path, {"at", "network", "overlap"})
        if waypoint.get("at") is None:
            raise ModelError(join(waypoint_path, "at"), "missing (seconds from the scenario's start, e.g. 30s)")
        at = parse_seconds(waypoint["at"], join(waypoint_path, "at"))
        if at <= previous_at:
            raise ModelError(join(waypoint_path, "at"), "waypoints must come later one after another")
        network = waypoint.get("network")
        if j == 0:
            parse_action("move", {**target, "to": network}, waypoint_path, model)  # label and network exist
            blueprint = model.blueprint(str(target["instance_type"]).split(".")[0])
            if blueprint is not None and all(a.network != network for a in blueprint.networks):
                raise ModelError(join(waypoint_path, "network"),
                                 f"the route starts on {network!r}, which {blueprint.label!r} is not on")
        else:
            if network == previous_network:
                raise ModelError(join(waypoint_path, "network"), f"already on {network!r} at the waypoint before")
            parameters = {"from": previous_network, "to": network, "overlap": waypoint.get("overlap", overlap)}
            parse_action("move", {**target, **parameters}, waypoint_path, model)
            moves.append((at, ScenarioAction(position=0, time=0.0, instance_type=str(target["instance_type"]),
                                             instances=instances, type="move", parameters=parameters)))
        previous_at, previous_network = at, network
    return moves


def merge_moves(actions: list[ScenarioAction], moves: list[tuple[float, ScenarioAction]]) -> list[ScenarioAction]:
    """The actions and the routes' moves in time order, with `time` gaps and positions recomputed."""
    timed, clock = [], 0.0
    for action in actions:
        clock += action.time
        timed.append((clock, 0, action))
    timed += [(at, 1, move) for at, move in moves]
    timed.sort(key=lambda item: (item[0], item[1]))
    merged, previous = [], 0.0
    for position, (at, _, action) in enumerate(timed):
        merged.append(replace(action, position=position, time=round(at - previous, 6)))
        previous = at
    return merged
