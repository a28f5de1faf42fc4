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

A whole node that dies (its machine, its dockerd and agent) sends nothing: a
poll waits at most WAIT_S at the agent, so an answer is due within WAIT_S +
ANSWER_S, and a new connection within agents.CONNECT_TIMEOUT_S. When no poll
has been answered for NODE_TIMEOUT_S since the first that went unanswered
was sent, the node is `silent`: the backend's `on_silent(hostname, since)`
marks its instances down, and calls to its agent fail at once. Its first
answer after that (`on_silent(hostname, None)`) is every task's state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from .agents import AgentClient
from .services import SwarmError
from .wire import EventsRequest, TaskState

log = logging.getLogger(__name__)

WAIT_S = 5.0  # how long one poll waits at the agent for an event
ANSWER_S = 5.0  # ... and how much longer its answer may take to come
NODE_TIMEOUT_S = 10.0  # no answer for this long since a poll was sent: the node is silent (its instances down)
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

Observe = Callable[[str, list[TaskState], bool, bool], None]  # (node hostname, states, full, restarted)
OnSilent = Callable[[str, "str | None"], None]  # (node hostname, since when it is silent; None: it answers again)


def clock(wall: float) -> str:
    """A wall-clock time as /status/ and the annotations show it: 2026-11-28T21:50:03Z."""
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_try(failures: int, unanswered_for: float, silent: bool) -> float:
    """Seconds until the next poll after `failures` failed ones: the backoff, but not past the moment
    the node would count as silent (so it is found so on time)."""
    wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
    if not silent and unanswered_for < NODE_TIMEOUT_S:
        wait = min(wait, max(0.05, NODE_TIMEOUT_S - unanswered_for))
    return wait


class NodeEvents:
    """Follows the task events of one node's agent until `stopping` is set."""

    def __init__(self, agents: AgentClient, hostname: str, observe: Observe, stopping: threading.Event,
                 on_silent: OnSilent | None = None):
        self.agents = agents
        self.hostname = hostname
        self.observe = observe
        self.on_silent = on_silent
        self.stopping = stopping
        self.epoch: str | None = None  # the run of the agent last heard from
        self.unanswered: tuple[float, float] | None = None  # (monotonic, wall) the first unanswered poll was sent
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
            sent = (time.monotonic(), time.time())
            try:
                answer = self.agents.call(self.hostname, "post", "/events/", request.to_json(),
                                          timeout=WAIT_S + ANSWER_S, probe=True)
            except SwarmError as error:
                if self.stopping.is_set():
                    return
                if failures == 0:
                    log.warning("task events of %s: %s; retrying", self.hostname, error)
                after = None  # whatever happened meanwhile: look at every task when it answers again
                self.unanswered = self.unanswered or sent
                unanswered_for = time.monotonic() - self.unanswered[0]
                silent = self.hostname in self.agents.silent
                if not silent and unanswered_for >= NODE_TIMEOUT_S:
                    self._silent(clock(self.unanswered[1]))
                    silent = True
                self.stopping.wait(next_try(failures, unanswered_for, silent))
                failures += 1
                continue
            if failures:
                log.info("task events of %s: the agent answers again", self.hostname)
            failures = 0
            self.unanswered = None
            if self.hostname in self.agents.silent:
                self._silent(None)
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

    def _silent(self, since: str | None) -> None:
        """The node is silent since `since` (its agent has not answered a poll sent then), or answers
        again (None): calls to it fail at once meanwhile, and the backend hears of it."""
        if since is None:
            log.warning("node %s answers again", self.hostname)
            self.agents.silent.pop(self.hostname, None)
        else:
            log.warning("node %s does not answer since %s", self.hostname, since)
            self.agents.silent[self.hostname] = since
        if self.on_silent is not None:
            try:
                self.on_silent(self.hostname, since)
            except Exception:
                log.exception("task events of %s: marking the node failed", self.hostname)
