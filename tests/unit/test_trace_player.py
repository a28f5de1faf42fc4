"""The trace player over a backend that records its reshapes: timing, commands, precedence, restore.

The backend here only records what the player asks of it; the kernel side of
a step is tested with real links in tests/integration/test_mobility.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from fogify_net.compile.plan import attach, compile_model, detach
from fogify_net.compile.resources import HostFacts
from fogify_net.errors import NotFound
from fogify_net.model import ModelBuilder
from fogify_net.model.schema import BoundTrace, TraceTarget
from fogify_net.model.traces import parse_trace_spec
from fogify_net.traces.player import TracePlayer


class RecordingBackend:
    """What the player uses of a Backend: plan, lock, reshape."""

    def __init__(self, plan, delay: float = 0.0):
        self.plan = plan
        self.lock = threading.RLock()
        self.delay = delay
        self.calls: list[tuple[float, set | None, dict]] = []

    def reshape(self, changed=None):
        with self.lock:
            time.sleep(self.delay)
            delays = {i.name: i.interfaces[0].uplink.delay for i in self.plan.instances if i.interfaces}
            self.calls.append((time.monotonic(), None if changed is None else set(changed), delays))


def model(trace: dict | None = None, car_trace: dict | None = None):
    m = ModelBuilder()
    m.service("app", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("r1", bidirectional={"latency": {"delay": "10ms"}}, **({"trace": trace} if trace else {}))
    m.network("r2")
    r1 = {"name": "r1", "trace": car_trace} if car_trace else "r1"
    m.blueprint("car", node="n", service="app", networks=[r1], replicas=1)
    m.blueprint("edge", node="n", service="app", networks=["r1"])
    m.blueprint("far", node="n", service="app", networks=["r2"])
    return m.build()


@pytest.fixture
def backend_of():
    players = []

    def make(trace=None, car_trace=None, delay=0.0):
        backend = RecordingBackend(compile_model(model(trace, car_trace), HostFacts(2000, 2, 2**34)), delay)
        player = TracePlayer(backend)
        players.append(player)
        return backend, player

    yield make
    for player in players:
        player.close()


STEPS = {"points": [{"time_s": 0, "delay": 20}, {"time_s": 0.2, "delay": 60}, {"time_s": 0.4, "delay": 40}],
         "loop": False, "resolution": "10ms"}


def delay_of(backend, name):
    return backend.plan.instance(name).interfaces[0].uplink.delay


def test_a_trace_starts_with_its_first_values_in_place_and_steps_on_time(backend_of):
    backend, player = backend_of(STEPS)
    assert [p.name for p in player.start_autostart()] == ["r1"]
    assert delay_of(backend, "car.1") == pytest.approx(0.01)  # the first step happened in start()
    assert backend.calls[0][1] == {("car.1", "r1"), ("edge.1", "r1")}  # only the traced attachments
    time.sleep(0.6)
    status = player.status()[0]
    assert status["state"] == "finished" and status["steps"] == 3 and status["skipped"] == 0
    assert status["values"] == {"delay_ms": 40.0}
    assert delay_of(backend, "edge.1") == pytest.approx(0.02)
    assert status["lateness_ms"]["count"] == 3 and status["lateness_ms"]["max"] < 50
    start = backend.calls[0][0]
    assert [round(call[0] - start, 1) for call in backend.calls] == [0, 0.2, 0.4]
    assert delay_of(backend, "far.1") == 0


def test_pause_holds_and_resume_continues_where_it_was(backend_of):
    backend, player = backend_of({**STEPS, "start": "action"})
    assert player.start_autostart() == []
    player.start("r1")
    time.sleep(0.25)
    player.pause("r1")
    assert delay_of(backend, "car.1") == pytest.approx(0.03)
    time.sleep(0.4)
    assert delay_of(backend, "car.1") == pytest.approx(0.03) and player.status()[0]["state"] == "paused"
    player.resume()
    time.sleep(0.3)
    assert delay_of(backend, "car.1") == pytest.approx(0.02) and player.status()[0]["state"] == "finished"


def test_stop_gives_back_what_the_trace_overrode(backend_of):
    backend, player = backend_of({**STEPS, "loop": True})
    player.start("r1")
    player.stop("r1")
    assert delay_of(backend, "car.1") == pytest.approx(0.005) and player.status()[0]["state"] == "stopped"
    assert backend.calls[-1][1] == {("car.1", "r1"), ("edge.1", "r1")}
    with pytest.raises(NotFound, match="unknown trace 'nope'"):
        player.stop("nope")


def test_a_late_player_applies_the_latest_due_step_and_counts_the_skipped(backend_of):
    backend, player = backend_of({"points": [{"time_s": t / 100, "delay": t + 1} for t in range(30)],
                                  "resolution": "10ms", "loop": False})
    with backend.lock:  # a long action holds the deployment
        player.start("r1")
        time.sleep(0.2)
    time.sleep(0.25)
    status = player.status()[0]
    assert status["state"] == "finished" and status["values"] == {"delay_ms": 30.0}
    assert status["skipped"] > 10 and status["steps"] + status["skipped"] == 30
    assert status["lateness_ms"]["max"] > 150


def test_a_blueprints_trace_wins_over_its_networks_and_joins_follow_the_trace(backend_of):
    backend, player = backend_of({"points": [{"time_s": 0, "delay": 100}]},
                                 car_trace={"points": [{"time_s": 0, "delay": 2}]})
    player.start_autostart()  # each half of the path's delay on each direction
    assert delay_of(backend, "car.1") == pytest.approx(0.001)
    assert delay_of(backend, "edge.1") == pytest.approx(0.05)
    far = backend.plan.instance("far.1")  # moves onto the traced network
    detach(backend.plan, far, "r2")
    attach(backend.plan, far, "r1")
    player.refresh()
    assert delay_of(backend, "far.1") == pytest.approx(0.05) and backend.calls[-1][1] == {("far.1", "r1")}
    player.stop("car@r1")
    assert delay_of(backend, "car.1") == pytest.approx(0.05)  # back under its network's trace


def test_an_inline_trace_replaces_its_namesake(backend_of):
    backend, player = backend_of()
    spec = parse_trace_spec({"points": [{"time_s": 0, "delay": 8}], "name": "mine"}, "p", "x", None)
    player.start(inline=BoundTrace(spec, TraceTarget("r1", label="edge")))
    assert delay_of(backend, "edge.1") == pytest.approx(0.004) and delay_of(backend, "car.1") == 0.005
    spec = parse_trace_spec({"points": [{"time_s": 0, "jitter": 2}], "name": "mine"}, "p", "x", None)
    player.start(inline=BoundTrace(spec, TraceTarget("r1", label="edge")))
    edge = backend.plan.instance("edge.1").interfaces[0].uplink
    assert edge.delay == pytest.approx(0.005) and edge.jitter == pytest.approx(0.002 / 2 ** 0.5)
    assert [s["name"] for s in player.status()] == ["mine"]
