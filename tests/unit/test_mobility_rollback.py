"""Move and trace actions on main's apply-or-rollback path, on the in-memory backend (no root):
a failed move or trace start changes nothing, GET /topology/ follows a move, traces are bounded."""

from __future__ import annotations

import threading
import time

import pytest

from fogify_net.actions.runner import ActionRunner
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.controller import Controller
from fogify_net.errors import BadRequest
from fogify_net.model import ModelBuilder
from fogify_net.model.actions import parse_action
from fogify_net.model.limits import MAX_TRACES
from fogify_net.traces.player import TracePlayer
from fogify_net_api import create_app
from tests.support.fakeapi import NOTHING, SEED, fake_controller, wait_for
from tests.support.fakebackend import FakeBackend


@pytest.fixture
def controller(tmp_path, monkeypatch):
    c = fake_controller(tmp_path, monkeypatch)
    yield c
    c.close()


@pytest.fixture
def client(controller):
    assert create_app(controller).test_client().post("/topology/", data={"file": SEED.read_text()}).status_code == 200
    assert wait_for(lambda: controller.status == "running")
    return create_app(controller).test_client()


def networks_of(plan, name: str) -> list[str]:
    return [i.network for i in plan.instance(name).interfaces]


def test_topology_shows_a_moved_instance_on_its_new_network_in_the_same_place(controller, client):
    response = client.post("/actions/move/", json={"params": {"instance_type": "car-workload-1.1",
                                                             "from": "edge-net-1", "to": "edge-net-2"}})
    assert response.status_code == 200, response.get_json()
    tasks = {t["Slot"]: t for t in client.get("/topology/").get_json()["fogify_car-workload-1"]}
    attachments = [a["Network"]["Spec"]["Name"] for a in tasks[1]["NetworksAttachments"]]
    assert attachments == ["edge-net-2", "internet"]  # where edge-net-1 was: the blueprint's order
    assert [a["Network"]["Spec"]["Name"] for a in tasks[2]["NetworksAttachments"]] == ["edge-net-1", "internet"]
    address = tasks[1]["NetworksAttachments"][0]["Addresses"][0]
    assert address == controller.emulation.plan.instance("car-workload-1.1").interface("edge-net-2").cidr


def small_plan():
    m = ModelBuilder()
    m.service("app", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    for name in ("r1", "r2", "r3"):
        m.network(name)
    m.blueprint("car", node="n", service="app", networks=["r1"], replicas=2)
    m.blueprint("edge", node="n", service="app", networks=["r1"])
    return compile_model(m.build(), HostFacts(2000, 2, 2**34))


def test_a_move_whose_second_group_fails_moves_the_first_back():
    emulation = FakeBackend(small_plan())
    plan = emulation.plan
    runner = ActionRunner(emulation)
    runner.execute(parse_action("move", {"instance_type": "car.2", "to": "r2"}, model=plan.model))
    real_move, calls = emulation.move, []

    def second_fails(instances, source, target, overlap):
        calls.append((source, target))
        if len(calls) == 2:
            raise RuntimeError("ip: RTNETLINK answers: No space left on device")
        real_move(instances, source, target, overlap)

    emulation.move = second_fails
    with pytest.raises(RuntimeError, match="No space left"):  # car.1 leaves r1, car.2 leaves r2: two groups
        runner.execute(parse_action("move", {"instance_type": "car", "to": "r3"}, model=plan.model))
    assert calls == [("r1", "r3"), ("r2", "r3"), ("r3", "r1")]  # the first group went back
    assert networks_of(plan, "car.1") == ["r1"] and networks_of(plan, "car.2") == ["r2"]
    assert plan.members("r3") == []


def test_a_move_holds_the_deployment_while_it_applies():
    """A move and a network change do not interleave: the second waits for the first's reshape."""
    emulation = FakeBackend(small_plan())
    plan = emulation.plan
    emulation.hold = threading.Event()
    runner = ActionRunner(emulation)
    mover = threading.Thread(target=runner.execute,
                             args=(parse_action("move", {"instance_type": "car.1", "to": "r2"}, model=plan.model),))
    mover.start()
    assert wait_for(lambda: emulation.inside == 1)
    change = threading.Thread(target=runner.execute, args=(parse_action(
        "network", {"instance_type": "edge", "network": "r1", "uplink": {"bandwidth": "3Mbps"}}, model=plan.model),))
    change.start()
    time.sleep(0.2)
    assert plan.instance("edge.1").interface("r1").uplink.rate != 3_000_000
    emulation.hold.set()
    mover.join(5)
    change.join(5)
    assert emulation.overlaps == 0 and networks_of(plan, "car.1") == ["r2"]
    assert plan.instance("edge.1").interface("r1").uplink.rate == 3_000_000


def test_a_trace_whose_first_values_cannot_be_applied_is_stopped_and_answers_an_error(controller, client):
    plan = controller.emulation.plan
    before = plan.instance("cloud-server.1").interface("internet").uplink
    controller.emulation.fail_reshape = 1
    response = client.post("/actions/trace/", json={"params": {
        "network": "internet", "instance_type": "cloud-server",
        "points": [{"time_s": 0, "delay": 80}, {"time_s": 1, "delay": 20}]}})
    assert response.status_code == 500
    assert "its first values could not be applied" in response.get_json()["message"]
    assert plan.instance("cloud-server.1").interface("internet").uplink == before
    assert [t["state"] for t in controller.traces.status()] == ["stopped"]


def test_a_deployment_plays_a_bounded_number_of_traces():
    emulation = FakeBackend(small_plan())
    player = TracePlayer(emulation)
    try:
        for i in range(MAX_TRACES):
            request = parse_action("trace", {"network": "r1", "name": f"t{i}", "loop": False,
                                             "points": [{"time_s": 0, "delay": 5}]}, model=emulation.plan.model)
            player.start(inline=request.inline)
        with pytest.raises(BadRequest, match=f"at most {MAX_TRACES}"):
            player.start(inline=parse_action("trace", {"network": "r1", "name": "one-more",
                                                       "points": [{"time_s": 0, "delay": 5}]},
                                             model=emulation.plan.model).inline)
        player.start(inline=request.inline)  # the same name again is a restart, not one more
    finally:
        player.close()


def test_the_cli_moves_and_commands_traces(controller, client, capsys):
    from werkzeug.serving import make_server

    from fogify_net.cli import main

    server = make_server("127.0.0.1", 0, create_app(controller), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert main(["move", "car-workload-1.1", "edge-net-2", "--from", "edge-net-1", "--overlap", "10ms",
                     "--url", url]) == 0
        ip = controller.emulation.plan.instance("car-workload-1.1").interface("edge-net-2").ip
        assert capsys.readouterr().out == f"car-workload-1.1: edge-net-1 -> edge-net-2 ({ip})\n"
        assert controller.emulation.moves[-1] == (["car-workload-1.1"], "edge-net-1", "edge-net-2", 0.01)
        assert main(["move", "car-workload-1.1", "edge-net-9", "--url", url]) == 1
        assert "unknown network 'edge-net-9'" in capsys.readouterr().err
        assert main(["trace", "pause", "--url", url]) == 0
        assert capsys.readouterr().out == "no trace to pause\n"
        assert main(["trace", "stop", "gone", "--url", url]) == 1
        assert "unknown trace 'gone'" in capsys.readouterr().err
    finally:
        server.shutdown()


def test_a_new_api_deploys_a_killed_ones_model_again_with_its_uploaded_trace_files(controller, tmp_path):
    """The record keeps the files uploaded with the model (beside it, once), so `POST /topology/`
    without a file works after a kill for a model that names trace files too."""
    import io
    import json

    import yaml

    model = yaml.safe_load(SEED.read_text())
    model["x-fogify"]["networks"][0]["trace"] = {"file": "t/cell.csv", "start": "action"}
    web = create_app(controller).test_client()
    response = web.post("/topology/", data={"file": yaml.safe_dump(model),
                                            "traces": (io.BytesIO(b"time_s,delay\n0,30\n1,60\n"), "t/cell.csv")})
    assert response.status_code == 200, response.get_json()
    assert wait_for(lambda: controller.status == "running")
    record = tmp_path / "deployment.json"
    data = json.loads(record.read_text())
    assert data["files"] == {"t/cell.csv": "0"} and "time_s" not in record.read_text()
    record.write_text(json.dumps({**data, "pid": 0}))  # as if its process had been killed

    again = Controller(data_dir=tmp_path, run_dir=str(tmp_path / "run"), capabilities=NOTHING, host_mhz=2000.0,
                       backend="fake", interval=3600, allow_host_access=True)
    try:
        assert "stopped without undeploying" in again.message
        again.deploy(None)
        assert wait_for(lambda: again.status == "running")
        assert [t.name for t in again.emulation.plan.model.traces] == ["internet"]
        again.undeploy()
        assert wait_for(lambda: again.status == "idle")
        assert not (tmp_path / "deployment-files").exists()
    finally:
        again.close()
