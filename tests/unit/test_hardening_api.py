"""The API and the controller under hostile or unlucky requests, on an in-memory backend (no root)."""

from __future__ import annotations

import threading
import time

import pytest

from fogify_net.model.limits import MAX_INSTANCES
from fogify_net.model.schema import Scenario, ScenarioAction
from fogify_net.scenarios.runner import ScenarioRunner
from fogify_net_api import create_app
from tests.support.fakeapi import SEED, fake_controller, wait_for


@pytest.fixture
def controller(tmp_path, monkeypatch):
    c = fake_controller(tmp_path, monkeypatch)
    yield c
    c.close()


@pytest.fixture
def client(controller):
    return create_app(controller).test_client()


@pytest.fixture
def deployed(controller, client):
    assert client.post("/topology/", data={"file": SEED.read_text()}).status_code == 200
    assert wait_for(lambda: controller.status == "running")
    return controller


def network(rate: str) -> dict:
    return {"params": {"instance_type": "cloud-server", "network": "internet", "uplink": {"bandwidth": rate}}}


def uplink_of(controller, name: str = "cloud-server.1", network_name: str = "internet"):
    return controller.emulation.plan.instance(name).interface(network_name).uplink


def test_a_message_with_cr_and_non_latin1_text_is_a_safe_header(controller, client):
    controller.status, controller.message = "error", "deploy failed:\r\nX-Injected: 1\n\ufffd\u4e2d end"
    response = client.get("/topology/")
    assert response.status_code == 500  # Fogify's answer for a failed deploy, not a crash of ours
    header = response.headers["X-Fogify-Message"]
    assert "\r" not in header and "\n" not in header and "X-Injected" in header
    assert header.isascii() and "\\ufffd" in header
    assert "X-Injected" not in response.headers


def test_a_deeply_nested_json_body_is_a_400(client):
    body = '{"params": ' + "[" * 200_000 + "]" * 200_000 + "}"
    response = client.post("/actions/network/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nests too deeply" in response.get_json()["message"]


def test_the_model_is_parsed_before_the_lock_is_taken(controller, client):
    """A bad upload answers at once even while another request holds the controller."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with controller._lock:
            held.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(5)
    try:
        started = time.monotonic()
        response = client.post("/topology/", data={"file": "services: [unclosed"})
        assert response.status_code == 400
        assert time.monotonic() - started < 2
    finally:
        release.set()


def test_a_failed_reshape_leaves_the_plan_as_applied_and_the_next_one_works(deployed, client):
    before = uplink_of(deployed)
    deployed.emulation.fail_reshape = 1
    response = client.post("/actions/network/", json=network("3Mbps"))
    assert response.status_code == 500
    assert uplink_of(deployed) == before  # rolled back ...
    assert deployed.emulation.applied[-1]["cloud-server.1"][0][0] == before  # ... and re-applied
    assert client.post("/actions/network/", json=network("4Mbps")).status_code == 200
    assert uplink_of(deployed).rate == 4_000_000


def test_failed_links_partition_and_link_state_changes_roll_back(deployed, client):
    plan = deployed.emulation.plan
    partitions, links = set(plan.partitions), {n: list(p.links) for n, p in plan.networks.items()}
    deployed.emulation.fail_reshape = 1
    assert client.post("/actions/partition/", json={"params": {"from": "cloud-server", "to": "mec-svc-1"}}
                       ).status_code == 500
    assert plan.partitions == partitions
    deployed.emulation.fail_reshape = 1
    assert client.post("/actions/link_down/", json={"params": {"instance_type": "cloud-server",
                                                               "network": "internet"}}).status_code == 500
    assert plan.instance("cloud-server.1").interface("internet").up
    assert {n: list(p.links) for n, p in plan.networks.items()} == links


def test_actions_are_serialised(deployed, client):
    """While one action applies its change, another's change does not reach the plan."""
    emulation = deployed.emulation
    emulation.hold = threading.Event()
    first = threading.Thread(target=client.post, args=("/actions/network/",), kwargs={"json": network("3Mbps")})
    first.start()
    assert wait_for(lambda: emulation.calls.count("reshape") >= 1)
    second = threading.Thread(target=client.post, args=("/actions/network/",), kwargs={"json": network("7Mbps")})
    second.start()
    time.sleep(0.3)
    assert uplink_of(deployed).rate == 3_000_000  # the second waits for the first
    emulation.hold.set()
    first.join(5)
    second.join(5)
    assert emulation.applied[0]["cloud-server.1"][0][0].rate == 3_000_000
    assert uplink_of(deployed).rate == 7_000_000


def test_an_action_after_undeploy_started_changes_nothing(deployed, client):
    emulation = deployed.emulation
    emulation.hold = threading.Event()
    first = threading.Thread(target=client.post, args=("/actions/network/",), kwargs={"json": network("3Mbps")})
    first.start()
    assert wait_for(lambda: "reshape" in emulation.calls)
    assert client.delete("/topology/").status_code == 200
    assert client.post("/actions/network/", json=network("9Mbps")).status_code == 409
    emulation.hold.set()
    first.join(5)
    assert wait_for(lambda: deployed.status == "idle")
    assert emulation.calls.index("teardown") > emulation.calls.index("reshape")


def test_scale_out_is_bounded_by_the_total(deployed, client):
    response = client.post("/actions/horizontal_scaling/", json={"params": {
        "instance_type": "cloud-server", "type": "up", "instances": MAX_INSTANCES}})
    assert response.status_code == 400
    assert f"at most {MAX_INSTANCES}" in response.get_json()["message"]
    assert len(deployed.emulation.plan.instances) == 7


def scenario(*actions: ScenarioAction) -> Scenario:
    return Scenario(name="s", actions=actions)


def test_a_scenario_with_a_huge_time_waits_and_can_be_cancelled():
    runner = ScenarioRunner(lambda kind, params: None)
    run = runner.start(scenario(ScenarioAction(0, 1e10, "a", None, "noop", {})))
    time.sleep(0.2)
    assert run.state == "running"
    runner.cancel("s")
    assert wait_for(lambda: run.state == "cancelled", 2)
    runner.start(scenario(ScenarioAction(0, 0, "a", None, "noop", {})))  # the next one may start


def test_a_scenario_whose_runner_breaks_ends_failed():
    runner = ScenarioRunner(lambda kind, params: None)
    run = runner.start(scenario(ScenarioAction(0, 0, "a", None, "network", None)))  # {**None}: TypeError
    assert wait_for(lambda: run.state == "failed", 2)
    assert "TypeError" in run.actions[0].result
