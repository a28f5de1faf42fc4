"""The controller's side of the agents' task events: one thread per node that long-polls its agent.

Docker's events are per daemon, and a Swarm manager does not forward its
workers' container events, so each node's agent follows its own dockerd
(agent/events.py) and the controller asks it, over the agent's authenticated
API, what came after the last event it saw (POST /events/, which waits for
one). Each answer goes to the backend's `observe(hostname, states, full,
restarted)`: `full` when the answer is every task of ours on the node (the
first poll, after the agent or its daemon's stream broke, or events were
missed), so that the backend compares instead of reading news; `restarted`
when it comes from a new run of the agent (which knows nothing of what the
last one installed, and whose helpers ended with it). When the agent does not
answer, the poll backs off and, once it answers again, asks for every state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .agents import AgentClient
from .services import SwarmError
from .wire import EventsRequest, TaskState

log = logging.getLogger(__name__)

WAIT_S = 20.0  # how long one poll waits at the agent for an event
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

Observe = Callable[[str, list[TaskState], bool, bool], None]  # (node hostname, states, full, restarted)


class NodeEvents:
    """Follows the task events of one node's agent until `stopping` is set."""

    def __init__(self, agents: AgentClient, hostname: str, observe: Observe, stopping: threading.Event):
        self.agents = agents
        self.hostname = hostname
        self.observe = observe
        self.stopping = stopping
        self.epoch: str | None = None  # the run of the agent last heard from
        self.thread = threading.Thread(target=self._run, name=f"swarm-events-{hostname}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _run(self) -> None:
        after: int | None = None  # None: ask for every state
        failures = 0
        while not self.stopping.is_set():
            request = EventsRequest(after, self.epoch, WAIT_S)
            try:
                answer = self.agents.call(self.hostname, "post", "/events/", request.to_json(), timeout=WAIT_S + 10)
            except SwarmError as error:
                if self.stopping.is_set():
                    return
                if failures == 0:
                    log.warning("task events of %s: %s; retrying", self.hostname, error)
                after = None  # whatever happened meanwhile: look at every task when it answers again
                self.stopping.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
                continue
            if failures:
                log.info("task events of %s: the agent answers again", self.hostname)
            failures = 0
            full = "states" in answer
            try:
                states = [TaskState.from_json(raw) for raw in answer["states" if full else "events"]]
                epoch, after = str(answer["epoch"]), int(answer["seq"])
            except (KeyError, TypeError, ValueError) as error:
                log.warning("task events of %s: a malformed answer (%s)", self.hostname, error)
                after = None
                self.stopping.wait(BACKOFF_S[-1])
                continue
            if self.stopping.is_set():
                return
            restarted = self.epoch is not None and epoch != self.epoch
            if restarted:
                log.warning("task events of %s: the agent restarted", self.hostname)
            self.epoch = epoch
            if states or full:
                try:
                    self.observe(self.hostname, states, full, restarted)
                except Exception:  # a failed look must not end the watch
                    log.exception("task events of %s: observing failed", self.hostname)
