"""Scenarios: timed actions, run by this client (Fogify's way) or by the server.

For the client's run the model's ``scenarios`` entries become a plan first;
the whole scenario is checked before its first wait, so a typo in the last
action is reported at once instead of after minutes of an experiment. The
server's run is started, watched and cancelled through ``/scenarios/``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pandas as pd
from tqdm import tqdm

from ._actions import Action_type, ActionsMixin, parse_action_type
from ._errors import ExceptionFogifySDK
from ._frames import naive_utc, utc_now
from ._http import SCENARIOS_URL
from ._metrics import MetricsMixin
from ._model import ModelMixin

logger = logging.getLogger("FogifySDK")

_SCENARIO_DONE = ("finished", "cancelled", "failed")

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
    """The scenario's actions, checked and ordered by ``position``, with its routes' moves merged in by time.

    A route (``routes: [{instance_type, instances, overlap, route: [{at, network}, ...]}]``) moves
    its device at each waypoint after the first, ``at`` seconds after the scenario's start, as the
    API does with it.
    """
    name = scenario.get("name", "?")
    entries = scenario.get("actions") or []
    if not isinstance(entries, list):
        raise ExceptionFogifySDK(f"scenarios[{name}].actions: expected a list")
    plan = [plan_action(entry, index, f"scenarios[{name}].actions[{index}]")
            for index, entry in enumerate(entries)]
    plan.sort(key=lambda step: step.position)
    routes = scenario.get("routes") or []
    if not isinstance(routes, list):
        raise ExceptionFogifySDK(f"scenarios[{name}].routes: expected a list")
    moves = [move for index, route in enumerate(routes)
             for move in route_moves(route, f"scenarios[{name}].routes[{index}]")]
    return merge_moves(plan, moves) if moves else plan


def route_moves(route: Any, where: str) -> list[tuple[float, PlannedAction]]:
    """(seconds from the start, move) for each waypoint of a route after the first."""
    if not isinstance(route, dict) or not isinstance(route.get("route"), list) or len(route["route"]) < 2:
        raise ExceptionFogifySDK(f"{where}.route: expected at least two waypoints {{at, network}}")
    target = {"instance_type": route.get("instance_type")}
    if route.get("instances") is not None:
        target["instances"] = route["instances"]
    moves, previous = [], None
    for index, waypoint in enumerate(route["route"]):
        if not isinstance(waypoint, dict) or "network" not in waypoint or "at" not in waypoint:
            raise ExceptionFogifySDK(f"{where}.route[{index}]: expected {{at, network}}")
        at = _seconds(waypoint["at"], f"{where}.route[{index}].at")
        if previous is not None:
            params = {**target, "from": previous, "to": waypoint["network"],
                      "overlap": waypoint.get("overlap", route.get("overlap", 0))}
            moves.append((at, PlannedAction(0, 0.0, Action_type.MOVE, params)))
        previous = waypoint["network"]
    return moves


def merge_moves(plan: list[PlannedAction], moves: list[tuple[float, PlannedAction]]) -> list[PlannedAction]:
    """Actions and moves in time order (the actions first at the same time), waits and positions recomputed."""
    timed, clock = [], 0.0
    for step in plan:
        clock += step.time
        timed.append((clock, 0, step))
    timed += [(at, 1, move) for at, move in moves]
    timed.sort(key=lambda item: (item[0], item[1]))
    merged, previous = [], 0.0
    for position, (at, _, step) in enumerate(timed):
        merged.append(PlannedAction(position, round(at - previous, 6), step.action_type, step.params))
        previous = at
    return merged


def _seconds(value: Any, where: str) -> float:
    """Seconds as a scenario writes them: 30, "30", "30s", "500ms"."""
    text = str(value).strip().lower()
    factor = 1.0
    for suffix, scale in (("ms", 0.001), ("s", 1.0)):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)], scale
            break
    try:
        return float(text) * factor
    except ValueError:
        raise ExceptionFogifySDK(f"{where}: expected seconds, got {value!r}") from None


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


class ScenariosMixin(ModelMixin, ActionsMixin, MetricsMixin):
    """scenario_execution (client-timed) and run_scenario / scenario_status / cancel_scenario (server-timed)."""

    def scenario_execution(self, name: str | None = None,
                           remove_previous_metrics: bool = True) -> tuple[datetime, datetime]:
        """Run a scenario of the model from this client, as Fogify does.

        Each action waits its ``time`` (seconds after the previous action) and
        is then posted; waits are measured on a monotonic clock from the start,
        so slow answers do not push later actions back. The whole scenario is
        checked first (an unknown name or action type raises before anything
        runs); an action the API refuses is logged and the scenario goes on.
        Returns (start, stop) as naive UTC datetimes, comparable with the
        metrics index. :meth:`run_scenario` runs it on the server instead.
        """
        scenario = select_scenario(self.scenarios, name)
        plan = plan_scenario(scenario)
        label = scenario.get("name", name)
        logger.info("Scenario %s execution process is started", label)
        if remove_previous_metrics:
            self.clean_metrics()
        total = sum(step.time for step in plan)
        start, origin, offset = utc_now(), time.monotonic(), 0.0
        with tqdm(total=math.ceil(total), desc=f"Scenario {label}", unit="s") as bar:
            for step in plan:
                offset += step.time
                self._sleep_until(origin + offset, bar, origin)
                self._run_step(step)
            _advance(bar, bar.total)
        stop = utc_now()
        logger.info("Scenario %s is finished", label)
        if remove_previous_metrics:
            try:
                self.get_metrics()
            except ExceptionFogifySDK as error:
                logger.warning("Could not fetch the metrics after scenario %s: %s", label, error)
        return start, stop

    def execute_scenario(self, name: str | None = None,
                         remove_previous_metrics: bool = True) -> tuple[datetime, datetime]:
        """:meth:`scenario_execution` under the name Fogify's documentation gives it."""
        return self.scenario_execution(name, remove_previous_metrics)

    def _sleep_until(self, moment: float, bar: tqdm, origin: float) -> None:
        while True:
            now = time.monotonic()
            _advance(bar, now - origin)
            if now >= moment:
                return
            time.sleep(min(1.0, moment - now))

    def _run_step(self, step: PlannedAction) -> None:
        if step.action_type is None:
            return
        try:
            self._post_action(step.action_type, step.params)
            logger.info("Action %s is executed", step.action_type.value)
        except ExceptionFogifySDK as error:
            logger.error("There was a problem at the scenario execution process: %s (action %s %s)",
                         error, step.action_type.value, step.params)

    def run_scenario(self, name: str, wait: bool = True,
                     timeout: float | None = None) -> tuple[datetime, datetime]:
        """Start a scenario of the deployed model on the server (``POST /scenarios/<name>/``).

        The API fires the actions on its own clock, so timing does not depend on
        this client staying connected. With ``wait`` a bar runs over the planned
        duration until the scenario ends (interrupting the wait cancels the
        scenario); a scenario that fails raises. ``timeout`` bounds the wait
        (default: planned duration + 60 s). Returns (start, end) as naive UTC
        datetimes: the planned end without ``wait``, the actual end with it.
        """
        answer = self._call("POST", self._scenario_path(name))
        if not isinstance(answer, dict):
            raise ExceptionFogifySDK(f"The API answered the start of scenario {name} with {answer!r}")
        start, end = naive_utc(answer.get("start")), naive_utc(answer.get("end"))
        if not wait:
            return _as_datetime(start), _as_datetime(end)
        planned = (end - start).total_seconds() if start is not None and end is not None else 0.0
        limit = timeout if timeout is not None else max(planned, 0.0) + 60.0
        with tqdm(total=math.ceil(max(planned, 0.0)), desc=f"Scenario {name}", unit="s") as bar:
            try:
                status = self._wait_scenario(name, bar, limit)
            except KeyboardInterrupt:
                self._cancel_quietly(name)
                raise
        if status.get("state") == "failed":
            raise ExceptionFogifySDK(f"Scenario {name} failed: {_failures(status)}", payload=status)
        if status.get("state") == "cancelled":
            logger.warning("Scenario %s was cancelled", name)
        return (_as_datetime(naive_utc(status.get("start")) or start),
                _as_datetime(naive_utc(status.get("end")) or end))

    def _wait_scenario(self, name: str, bar: tqdm, limit: float) -> dict:
        origin = time.monotonic()
        while True:
            status = self.scenario_status(name)
            elapsed = time.monotonic() - origin
            if status.get("state") in _SCENARIO_DONE:
                _advance(bar, bar.total)
                return status
            _advance(bar, elapsed)
            if elapsed >= limit:
                raise ExceptionFogifySDK(f"Scenario {name} is still {status.get('state')} after {limit:.0f} s",
                                         payload=status)
            time.sleep(min(self.poll_interval, limit - elapsed))

    def scenario_status(self, name: str | None = None) -> Any:
        """A scenario's progress ``{name, state, start, end, actions: [...]}``; all of them without ``name``."""
        return self._call("GET", SCENARIOS_URL if name is None else self._scenario_path(name))

    def cancel_scenario(self, name: str) -> Any:
        """Stop a running server-side scenario; actions already fired stay in effect."""
        return self._call("DELETE", self._scenario_path(name))

    def _cancel_quietly(self, name: str) -> None:
        try:
            self.cancel_scenario(name)
        except ExceptionFogifySDK as error:
            logger.warning("Could not cancel scenario %s: %s", name, error)

    @staticmethod
    def _scenario_path(name: str) -> str:
        return f"{SCENARIOS_URL}{quote(str(name), safe='')}/"


def _failures(status: dict) -> str:
    failed = [action for action in status.get("actions") or []
              if action.get("result") not in (None, "OK", "ok")]
    if not failed:
        return status.get("message") or "no details"
    return "; ".join(f"{a.get('type')} on {a.get('instance_type')}: {a.get('result')}" for a in failed)


def _advance(bar: tqdm, seconds: float) -> None:
    """Move a seconds bar forward to ``seconds`` (never past its total, never back)."""
    target = int(min(seconds, bar.total if bar.total is not None else seconds))
    if target > bar.n:
        bar.update(target - bar.n)


def _as_datetime(value: pd.Timestamp | None) -> datetime | None:
    return None if value is None else value.to_pydatetime()
