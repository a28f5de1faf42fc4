"""What the node's dockerd says of fogify-net's tasks, kept for the controller (POST /events/).

A task's container can die on its node without the controller hearing of it
(`docker kill`, the OOM killer, a dockerd restart); Swarm then starts a new
task whose namespace nobody has shaped. The agent follows its daemon's events
with the local backend's watcher (host/dockerevents.py) and records, for every
die, oom and start of a task of ours, the container's state as its inspect
says (the event is only a hint), numbered. The controller long-polls with the
last number it saw and gets what came after; when it cannot be told exactly
(it asks for the first time, this agent restarted, the record overflowed, or
the daemon's stream broke and was followed again) it gets the state of every
task of ours on the node instead, and compares.

Only containers that carry fogify-net's task labels are reported (tasks.is_ours).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections import deque

from ....compile.naming import LABEL
from ....host.dockerevents import DockerWatcher, stop_reason
from .. import tasks
from ..wire import EventsRequest, TaskState

log = logging.getLogger(__name__)

KEEP = 1024  # events kept for a controller that polls late; older ones make it ask for every state


def task_state(container) -> TaskState | None:
    """The TaskState of a Docker container, None when it is not a task of fogify-net."""
    labels = container.labels or {}
    if not tasks.is_ours(labels):
        return None
    task = tasks.task_from_labels(container.id, 0, labels)
    state = container.attrs.get("State", {})
    running = bool(state.get("Running"))
    instance = task.instance if task is not None else labels.get(tasks.TASK_LABEL, "")
    return TaskState(container.id, instance, labels.get(tasks.TASK_ID_LABEL, ""), running,
                     "" if running else stop_reason(state))


class TaskEvents:
    """The numbered record of this node's task events, and the long poll that reads it."""

    def __init__(self, client, keep: int = KEEP):
        self.client = client  # the node's docker.DockerClient
        self.epoch = secrets.token_hex(8)  # this run of the agent: numbers restart with it
        self._seq = 0
        self._record: deque[tuple[int, TaskState | None]] = deque(maxlen=keep)  # None: look at every task
        self._changed = threading.Condition()
        self._watcher: DockerWatcher | None = None

    def start(self) -> None:
        self._watcher = DockerWatcher(self.client.api, self.observe)
        self._watcher.start()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self.nudge()

    def nudge(self) -> None:
        """Wake the waiting polls now (tasks were forgotten: undeploy, replaced), with what they have."""
        with self._changed:
            self._changed.notify_all()

    def observe(self, container_id: str | None) -> None:
        """The watcher's callback: record the container's state now; None (the daemon's stream broke
        and is followed again) records that every task must be looked at."""
        state = None
        if container_id is not None:
            try:
                state = task_state(self.client.containers.get(container_id))
            except Exception as error:  # removed meanwhile: the controller looks at every task instead
                log.debug("container %s: %s", container_id[:12], error)
            else:
                if state is None:  # not a task of ours
                    return
        with self._changed:
            self._seq += 1
            self._record.append((self._seq, state))
            self._changed.notify_all()

    def states(self) -> list[TaskState]:
        """Every container of fogify-net's tasks on this node, running or not (Swarm keeps dead tasks'
        containers for its task history)."""
        found = []
        for container in self.client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
            with contextlib.suppress(Exception):  # removed between the list and its inspect
                state = task_state(container)
                if state is not None:
                    found.append(state)
        return found

    def poll(self, request: EventsRequest) -> dict:
        """The answer to POST /events/: the events after `request.after`, waiting up to `request.wait`
        seconds for one (or a nudge); or every task's state, when the events alone cannot tell."""
        with self._changed:
            oldest = self._record[0][0] if self._record else self._seq + 1
            full = (request.epoch != self.epoch or request.after is None or request.after > self._seq
                    or request.after < oldest - 1)
            if not full and self._seq == request.after and request.wait > 0:
                self._changed.wait(request.wait)
            seq = self._seq
            events = [] if full else [state for number, state in self._record if number > request.after]
        if full or any(state is None for state in events):
            return {"epoch": self.epoch, "seq": seq, "states": [s.to_json() for s in self.states()]}
        return {"epoch": self.epoch, "seq": seq, "events": [s.to_json() for s in events]}
