"""Server-side scenarios: timed actions fired on the controller's clock.

Fogify's SDK slept on the client between actions, so the schedule drifted by
every request's latency. Here each action has an absolute planned time
(start + the sum of the `time` gaps before it) and a thread fires it then,
recording when it really fired.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import Conflict, NotFound
from ..model.errors import shown
from ..model.schema import Scenario

log = logging.getLogger(__name__)

WAIT_SLICE_S = 3600.0


@dataclass
class ActionRecord:
    position: int
    type: str
    instance_type: str
    planned: float  # epoch seconds
    fired: float | None = None
    lateness_ms: float | None = None
    result: str | None = None  # "OK", an error message, or "cancelled"


@dataclass
class ScenarioRun:
    name: str
    start: float
    end: float  # planned end while running, actual end afterwards
    actions: list[ActionRecord]
    state: str = "running"  # running, finished, failed, cancelled
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "state": self.state, "start": self.start, "end": self.end,
            "actions": [vars(a).copy() for a in self.actions],
        }


Execute = Callable[[str, dict], None]


class ScenarioRunner:
    """Runs one scenario at a time; keeps the record of past runs by name."""

    def __init__(self, execute: Execute):
        self._execute = execute
        self._runs: dict[str, ScenarioRun] = {}
        self._lock = threading.Lock()

    def start(self, scenario: Scenario) -> ScenarioRun:
        with self._lock:
            busy = [r.name for r in self._runs.values() if r.state == "running"]
            if busy:
                raise Conflict(f"scenario {shown(busy[0])} is still running; cancel it first")
            start = time.time()
            planned, actions = start, []
            for action in scenario.actions:
                planned += action.time
                actions.append(ActionRecord(action.position, action.type, action.instance_type, planned))
            run = ScenarioRun(scenario.name, start, planned, actions)
            self._runs[scenario.name] = run
        threading.Thread(target=self._run, args=(scenario, run), daemon=True, name=f"scenario-{scenario.name}").start()
        return run

    def get(self, name: str) -> ScenarioRun:
        run = self._runs.get(name)
        if run is None:
            raise NotFound(f"scenario {shown(name)} has not run")
        return run

    def runs(self) -> list[ScenarioRun]:
        return list(self._runs.values())

    def cancel(self, name: str | None = None) -> None:
        """Cancel `name`, or every running scenario when None."""
        for run in ([self.get(name)] if name else self.runs()):
            run._cancel.set()

    def _run(self, scenario: Scenario, run: ScenarioRun) -> None:
        """Fire the actions; whatever happens (an action's error, a bug here), the run ends in a final
        state, so a later scenario can start."""
        crashed = None
        try:
            self._fire(scenario, run)
        except BaseException as error:  # noqa: BLE001 (recorded, and the run must not stay "running")
            log.exception("scenario %s stopped", run.name)
            crashed = f"the scenario runner stopped: {type(error).__name__}: {error}"
        cancelled = run._cancel.is_set()
        for record in run.actions:
            if record.result is None:
                record.result = crashed or "cancelled"
        run.end = time.time() if cancelled or crashed else max(run.end, time.time())
        run.state = "cancelled" if cancelled and not crashed else (
            "failed" if crashed or any(r.result not in ("OK",) for r in run.actions) else "finished")

    def _fire(self, scenario: Scenario, run: ScenarioRun) -> None:
        for action, record in zip(scenario.actions, run.actions):
            # Event.wait sleeps on the monotonic clock; the plan itself is in wall-clock time. It waits
            # in slices: one wait of 1e10 s overflows the platform's timeout.
            while (remaining := record.planned - time.time()) > 0:
                if run._cancel.wait(min(remaining, WAIT_SLICE_S)):
                    return
            if run._cancel.is_set():
                return
            record.fired = time.time()
            record.lateness_ms = round((record.fired - record.planned) * 1000, 3)
            if action.type == "noop":
                record.result = "OK"
                continue
            params = {**action.parameters, "instance_type": action.instance_type}
            if action.instances is not None:
                params.setdefault("instances", action.instances)
            try:
                self._execute(action.type, params)
                record.result = "OK"
            except Exception as error:  # an action's failure is recorded; the scenario goes on, as in Fogify
                log.warning("scenario %s, action %d (%s) failed: %s", run.name, action.position, action.type, error)
                record.result = str(error) or type(error).__name__
