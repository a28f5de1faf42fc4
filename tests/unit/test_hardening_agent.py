"""The Swarm agent takes data, not rule text; acts only on fogify-net's tasks; our labels beat a model's."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from fogify_net.backends.swarm.agent.server import create_app
from fogify_net.backends.swarm.agent.worker import Agent
from fogify_net.backends.swarm.services import create_service
from fogify_net.backends.swarm.wire import FlowsRequest, filter_from_json, filter_to_json
from fogify_net.compile.flows import flow_ruleset_for
from fogify_net.compile.netfilter import Filter
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.host import containers as host_containers
from fogify_net.model import parse_model_text

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASK = "a" * 64
SEED = Path(__file__).parents[1] / "fixtures" / "seed-taxi.yaml"


class RecordingAgent:
    def __init__(self):
        self.calls = []

    def shape(self, tasks, filters):
        self.calls.append(("shape", filters))
        return {}

    def flows(self, request):
        self.calls.append(("flows", request))
        return {}


@pytest.fixture
def recorded():
    agent = RecordingAgent()
    return agent, create_app(agent, TOKEN).test_client()


HOSTILE_FILTERS = [
    'ip saddr 10.0.0.1 drop; include "/etc/shadow"',  # the old wire format: rule text
    {"sources": ['10.0.0.1 } include "/etc/shadow" {'], "targets": ["10.0.0.2"], "action": "drop"},
    {"sources": ["10.0.0.1"], "targets": ["10.0.0.2"], "action": 'drop\ninclude "/etc/shadow"'},
    {"sources": ["10.0.0.1"], "targets": ["10.0.0.2"], "action": "drop", "protocol": "tcp th dport 1 accept"},
    {"sources": ["10.0.0.1"], "targets": ["10.0.0.2"], "action": "drop", "ports": ["1 accept", 2]},
    {"sources": ["10.0.0.1"], "targets": ["10.0.0.2"], "action": "drop", "ports": [70000, 70001]},
]


@pytest.mark.parametrize("hostile", HOSTILE_FILTERS)
def test_shape_refuses_anything_but_structured_filters(recorded, hostile):
    agent, client = recorded
    response = client.post("/shape/", json={"tasks": [], "filters": [hostile]}, headers=AUTH)
    assert response.status_code == 400, response.get_json()
    assert agent.calls == []


def test_a_filter_crosses_the_wire_and_renders_the_rule_the_local_backend_makes():
    rule = Filter((IPv4Address("10.0.0.1"), IPv4Address("10.0.0.3")), (IPv4Address("10.0.0.2"),), "drop",
                  "tcp", (80, 90))
    assert filter_from_json(filter_to_json(rule)) == rule
    assert rule.render() == "ip saddr { 10.0.0.1, 10.0.0.3 } ip daddr { 10.0.0.2 } meta l4proto tcp th dport 80-90 drop"


@pytest.mark.parametrize("body", [
    {"networks": ["0123456789abcdef"], "ruleset": 'include "/etc/shadow"'},  # the old wire format
    {"networks": ["../../../../etc"], "subnets": ["10.0.0.0/24"]},
    {"networks": ["0123456789abcdef"], "subnets": ['10.0.0.0/24 } include "/etc/shadow" {']},
])
def test_flows_refuses_rule_text_and_odd_ids(recorded, body):
    agent, client = recorded
    assert client.post("/flows/", json=body, headers=AUTH).status_code == 400
    assert agent.calls == []


def test_flows_takes_subnets_and_the_agent_renders_the_table(recorded):
    agent, client = recorded
    body = FlowsRequest(("0123456789abcdef",), (IPv4Network("10.0.0.0/24"),)).to_json()
    assert client.post("/flows/", json=body, headers=AUTH).status_code == 200
    assert agent.calls[0][1].subnets == (IPv4Network("10.0.0.0/24"),)
    assert 'iifname "veth*" ip saddr { 10.0.0.0/24 }' in flow_ruleset_for([IPv4Network("10.0.0.0/24")], "veth*")


class FakeContainer:
    def __init__(self, labels):
        self.labels = labels
        self.attrs = {"State": {"Pid": 4242}}


class FakeClient:
    def __init__(self, labels):
        self.containers = self
        self._labels = labels

    def get(self, container_id):
        return FakeContainer(self._labels)


TASK_LABELS = {"fogify-net": "1", "fogify-net.label": "web", "com.docker.swarm.service.name": "web",
               "com.docker.swarm.task.id": "x1"}


@pytest.mark.parametrize("labels", [
    {},  # any container on the node
    {"com.docker.swarm.service.name": "web", "com.docker.swarm.task.id": "x1"},  # another Swarm task
    {**TASK_LABELS, "fogify-net": "0"},
    {**TASK_LABELS, "com.docker.swarm.service.name": "other"},
])
def test_the_agent_acts_only_on_fogify_net_tasks(labels):
    agent = Agent.__new__(Agent)
    agent.client = FakeClient(labels)
    with pytest.raises(PermissionError):
        agent._container(TASK)
    client = create_app(agent, TOKEN).test_client()
    response = client.post("/exec/", json={"container": TASK, "command": "id", "wait": True}, headers=AUTH)
    assert response.status_code == 403


def test_a_task_of_fogify_net_is_accepted():
    agent = Agent.__new__(Agent)
    agent.client = FakeClient(TASK_LABELS)
    assert agent._pid(TASK) == 4242


def model_with_label(value: str):
    text = SEED.read_text().replace("      NODE_TYPE: CLOUD_NODE\n", "      NODE_TYPE: CLOUD_NODE\n", 1)
    text = text.replace("  cloud-server:\n    image: taxi-exp:0.0.1\n",
                        f'  cloud-server:\n    image: taxi-exp:0.0.1\n    labels:\n      fogify-net: "{value}"\n'
                        '      fogify-net.label: x\n      fogify-net.instance: x\n', 1)
    return compile_model(parse_model_text(text), HostFacts(cpu_mhz=2000.0, cpus=2, memory=2**33))


def test_our_labels_win_over_the_models_on_swarm():
    plan = model_with_label("0")
    captured = {}

    class Services:
        def create(self, image, **options):
            captured.update(options)
            return object()

    class Client:
        services = Services()

    create_service(Client(), plan, "cloud-server")
    assert captured["container_labels"]["fogify-net"] == "1"
    assert captured["container_labels"]["fogify-net.label"] == "cloud-server"


def test_our_labels_win_over_the_models_locally(monkeypatch):
    from fogify_net.backends.local.containers import start_container

    plan = model_with_label("0")
    captured = {}

    class Made:
        def start(self):
            pass

        def reload(self):
            pass

    class Containers:
        def create(self, image, **options):
            captured.update(options)
            return Made()

    class Client:
        containers = Containers()

    monkeypatch.setattr(host_containers, "docker_client", lambda: Client())
    start_container(plan.instances_of("cloud-server")[0])
    assert captured["labels"]["fogify-net"] == "1"
    assert captured["labels"]["fogify-net.instance"] == "cloud-server.1"
