"""The Swarm agents' task events (agent/events.py) and what the backend makes of them (manager.py), without
a Swarm: the record and its long poll, the wire's checks, lost instances and their replacements."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from fogify_net.backends.swarm.agent.events import TaskEvents, task_state
from fogify_net.backends.swarm.agent.server import create_app
from fogify_net.backends.swarm.wire import EventsRequest, TaskState

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OURS = {"fogify-net": "1", "fogify-net.label": "edge", "com.docker.swarm.service.name": "edge",
        "com.docker.swarm.task.id": "task2", "com.docker.swarm.task.name": "edge.2.task2"}
DEAD = "d" * 64
LIVE = "e" * 64


class Container:
    def __init__(self, cid: str, labels: dict, state: dict):
        self.id, self.labels, self.attrs = cid, labels, {"State": state}


class Containers:
    def __init__(self, *containers: Container):
        self.by_id = {c.id: c for c in containers}

    def get(self, cid: str) -> Container:
        if cid not in self.by_id:
            raise LookupError(cid)  # (docker.errors.NotFound in life)
        return self.by_id[cid]

    def list(self, all: bool = False, filters: dict | None = None) -> list[Container]:  # noqa: A002 (docker's name)
        return list(self.by_id.values())


def events_of(*containers: Container) -> TaskEvents:
    return TaskEvents(SimpleNamespace(containers=Containers(*containers)))


def test_a_task_state_says_why_in_the_local_backends_words() -> None:
    killed = task_state(Container(DEAD, OURS, {"Running": False, "ExitCode": 137}))
    assert killed == TaskState(DEAD, "edge.2", "task2", False, "stopped (exit code 137)")
    oom = task_state(Container(DEAD, OURS, {"Running": False, "ExitCode": 137, "OOMKilled": True}))
    assert oom.reason == "was OOM-killed"
    assert task_state(Container(LIVE, OURS, {"Running": True})).reason == ""
    # nothing but fogify-net's tasks is reported
    assert task_state(Container(LIVE, {**OURS, "fogify-net": "0"}, {"Running": True})) is None
    assert task_state(Container(LIVE, {"com.docker.swarm.task.id": "x"}, {"Running": True})) is None


def test_the_poll_returns_what_came_after_and_every_state_when_it_cannot_tell() -> None:
    events = events_of(Container(DEAD, OURS, {"Running": False, "ExitCode": 137}),
                       Container(LIVE, OURS, {"Running": True}))
    first = events.poll(EventsRequest(None, None, 0))  # first ask: every task of ours on the node
    assert first["epoch"] == events.epoch and first["seq"] == 0 and len(first["states"]) == 2

    events.observe(DEAD)
    answer = events.poll(EventsRequest(0, events.epoch, 0))
    assert answer["seq"] == 1 and [TaskState.from_json(s).reason for s in answer["events"]] == [
        "stopped (exit code 137)"]
    assert events.poll(EventsRequest(1, events.epoch, 0)) == {"epoch": events.epoch, "seq": 1, "events": []}

    events.observe(None)  # the daemon's stream broke and is followed again: look at every task
    assert "states" in events.poll(EventsRequest(1, events.epoch, 0))
    assert events.poll(EventsRequest(2, events.epoch, 0))["events"] == []
    events.observe("f" * 64)  # removed before its inspect: likewise
    assert "states" in events.poll(EventsRequest(2, events.epoch, 0))
    assert "states" in events.poll(EventsRequest(3, "0123", 0))  # another run of the agent
    assert "states" in events.poll(EventsRequest(7, events.epoch, 0))  # numbers it never gave


def test_an_overflowed_record_gives_every_state() -> None:
    events = TaskEvents(SimpleNamespace(containers=Containers(Container(LIVE, OURS, {"Running": True}))), keep=2)
    for _ in range(4):
        events.observe(LIVE)
    assert "states" in events.poll(EventsRequest(1, events.epoch, 0))  # events 2 was dropped
    assert len(events.poll(EventsRequest(2, events.epoch, 0))["events"]) == 2


def test_the_poll_waits_for_an_event_or_a_nudge() -> None:
    events = events_of(Container(LIVE, OURS, {"Running": True}))
    started = time.monotonic()
    assert events.poll(EventsRequest(0, events.epoch, 0.2))["events"] == []
    assert time.monotonic() - started >= 0.2
    threading.Timer(0.1, events.observe, [LIVE]).start()
    started = time.monotonic()
    assert len(events.poll(EventsRequest(0, events.epoch, 10))["events"]) == 1
    assert time.monotonic() - started < 5
    threading.Timer(0.1, events.nudge).start()  # /forget/ at undeploy: the poll ends now
    started = time.monotonic()
    assert events.poll(EventsRequest(1, events.epoch, 10))["events"] == []
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("body", [
    {"after": 0, "epoch": '0" ; include "/etc/shadow"', "wait": 1},
    {"after": -1, "epoch": None, "wait": 1},
    {"after": 0, "epoch": None, "wait": 3600},  # would hold an agent thread an hour
    {"after": "x", "epoch": None, "wait": 1},
])
def test_events_requests_are_checked(body) -> None:
    agent = SimpleNamespace(events=events_of())
    response = create_app(agent, TOKEN).test_client().post("/events/", json=body, headers=AUTH)
    assert response.status_code == 400, response.get_json()
    assert create_app(agent, TOKEN).test_client().post("/events/", json=body).status_code == 401


# -- the backend -------------------------------------------------------------------------------


def swarm_task(slot: int, container: str, ip: str) -> dict:
    return {"ID": f"t-{container[:4]}", "Slot": slot, "NodeID": "n1", "Status": {
        "State": "running", "ContainerStatus": {"ContainerID": container}},
        "NetworksAttachments": [{"Network": {"Spec": {"Name": "lan"}}, "Addresses": [f"{ip}/24"]}]}


def backend_with_two_tasks():
    """A SwarmBackend without a Swarm: edge.1 and edge.2 adopted on node-1; reshape records its calls."""
    from fogify_net.backends.swarm import SwarmBackend
    from fogify_net.compile.plan import compile_model
    from fogify_net.compile.resources import HostFacts
    from fogify_net.model import ModelBuilder

    m = ModelBuilder()
    m.service("app", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="64M")
    m.network("lan", subnet="10.98.3.0/24")
    m.blueprint("edge", node="n", service="app", networks=["lan"], replicas=2)
    plan = compile_model(m.build(), HostFacts(cpu_mhz=1000.0, cpus=2, memory=2**32))
    states: list[tuple[str, str]] = []
    backend = SwarmBackend.__new__(SwarmBackend)
    SwarmBackend.__base__.__init__(backend, plan, lambda state, detail: states.append((state, detail)))
    backend.states = states
    node = SimpleNamespace(attrs={"Description": {"Hostname": "node-1"}})
    backend.client = SimpleNamespace(nodes=SimpleNamespace(get=lambda node_id: node))
    backend._tasks, backend._shaped, backend._lost_container, backend._watchers = {}, set(), {}, {}
    backend._silent = {}
    backend._stop, backend._wake, backend._hurry_until = threading.Event(), threading.Event(), 0.0
    backend._stop.set()  # no event polls started
    running = [swarm_task(1, "a" * 64, "10.98.3.5"), swarm_task(2, LIVE, "10.98.3.6")]
    backend._services = {"edge": SimpleNamespace(tasks=lambda filters: running)}
    backend._adopt("edge", running)
    backend.reshaped = []

    def reshape(changed=None):
        backend.reshaped.append(sorted(t["container"][:1] for t in backend._tasks.values()))
        backend._shaped = {t["container"] for t in backend._tasks.values()}

    backend.reshape = reshape
    backend._forget_replaced = lambda before: None
    backend._shaped = {t["container"] for t in backend._tasks.values()}
    backend.state = "running"
    return backend, running


def test_a_dead_task_makes_its_instance_lost_until_its_replacement_is_shaped() -> None:
    backend, running = backend_with_two_tasks()
    backend._stop.clear()
    backend._observe("node-1", [TaskState(LIVE, "edge.2", "t-eeee", False, "stopped (exit code 137)")], False)
    assert backend.lost == {"edge.2": "stopped (exit code 137)"}
    assert backend.states[-1] == ("degraded", "edge.2 stopped (exit code 137)")  # the controller annotates it
    assert sorted(backend.started()) == ["edge.1"] and backend.task_facts()["edge.2"].state == "failed"
    assert backend._wake.is_set() and backend._hurry_until > time.monotonic()  # the reconciler looks now

    running[1] = swarm_task(2, "f" * 64, "10.98.3.7")  # Swarm's replacement, a new address
    backend._stop.set()  # (no event poll for the node)
    backend._reconcile()
    assert backend.reshaped == [["a", "f"]] and backend.lost == {}
    assert backend.states[-1] == ("running", "")
    assert str(backend.plan.instance("edge.2").interface("lan").ip) == "10.98.3.7"
    assert sorted(backend.started()) == ["edge.1", "edge.2"]


def test_a_full_answer_without_a_current_container_makes_it_lost() -> None:
    backend, _ = backend_with_two_tasks()
    backend._stop.clear()
    backend._observe("node-1", [TaskState("a" * 64, "edge.1", "t-aaaa", True, "")], True)
    assert backend.lost == {"edge.2": "was removed from its node"}
    backend._observe("node-2", [], True)  # another node knows nothing of them: no news
    assert list(backend.lost) == ["edge.2"]


def test_events_are_ignored_while_undeploying() -> None:
    backend, _ = backend_with_two_tasks()  # (_stop is set)
    backend._observe("node-1", [TaskState(LIVE, "edge.2", "t-eeee", False, "stopped (exit code 137)")], False)
    assert backend.lost == {} and backend.states == []


def test_a_restarted_agent_gets_its_nodes_tasks_shaped_again() -> None:
    backend, _ = backend_with_two_tasks()
    both = [TaskState("a" * 64, "edge.1", "t-aaaa", True, ""), TaskState(LIVE, "edge.2", "t-eeee", True, "")]
    backend._stop.clear()
    backend._observe("node-1", both, True, restarted=False)
    backend._stop.set()
    backend._reconcile()
    assert backend.reshaped == [] and backend.lost == {}  # nothing new: nothing sent
    backend._stop.clear()
    backend._observe("node-1", both, True, restarted=True)  # a new run of the agent, which installed nothing
    assert backend._wake.is_set()
    backend._stop.set()
    backend._reconcile()
    assert backend.reshaped == [["a", "e"]] and backend.lost == {}
