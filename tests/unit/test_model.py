"""The model layer: units, the seed's model, and malformed models that must name their field."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from fogify_net.model import ModelBuilder, ModelError, load_model, parse_model
from fogify_net.model.actions import (
    HorizontalScaling,
    NetworkChange,
    Stress,
    VerticalScaling,
    parse_action,
)
from fogify_net.model.units import parse_duration, parse_percent, parse_rate, parse_seconds, parse_size

SEED = Path(__file__).parents[1] / "fixtures" / "seed-taxi.yaml"


@pytest.fixture
def seed() -> dict:
    return yaml.safe_load(SEED.read_text())


@pytest.mark.parametrize(
    "text, bits",
    [("10Mbps", 10_000_000), ("100kbps", 100_000), ("1Gbps", 10**9), ("5mbit", 5_000_000),
     ("1MBps", 8_000_000), ("2KBps", 16_000), ("1.5Mbps", 1_500_000), ("64bit", 64)],
)
def test_rates_are_bits_per_second_unless_bytes_are_written(text, bits):
    assert parse_rate(text, "f") == bits


@pytest.mark.parametrize(
    "text, seconds", [("50ms", 0.05), ("1.5s", 1.5), ("200us", 0.0002), (0, 0.0), ("3000ms", 3.0)]
)
def test_durations(text, seconds):
    assert parse_duration(text, "f") == pytest.approx(seconds)


def test_percent_sizes_and_seconds():
    assert parse_percent("0.1%", "f") == pytest.approx(0.1)
    assert parse_percent(0.5, "f") == pytest.approx(0.5)
    assert parse_size("512M", "f") == 512 * 2**20
    assert parse_size("0.5G", "f") == 2**29
    assert parse_size("4GB", "f") == 4 * 2**30
    assert parse_seconds(30, "f") == 30
    assert parse_seconds("500ms", "f") == pytest.approx(0.5)


def test_the_seed_model_reads_as_the_walkthrough_describes():
    model = load_model(SEED)
    assert [b.label for b in model.blueprints] == [
        "cloud-server", "mec-svc-1", "mec-svc-2", "car-workload-1", "car-workload-2"]
    assert sum(b.replicas for b in model.blueprints) == 7
    internet = model.networks["internet"]
    assert internet.uplink.rate == 10_000_000 and internet.downlink.rate == 5_000_000
    assert internet.uplink.delay == pytest.approx(0.05) and internet.uplink.loss == pytest.approx(0.1)
    edge = model.networks["edge-net-1"]
    # bidirectional describes the host-to-host path: each direction carries its share
    assert edge.uplink.delay + edge.downlink.delay == pytest.approx(0.005)
    assert edge.uplink.rate == edge.downlink.rate == 100_000_000
    assert 1 - (1 - edge.uplink.loss / 100) * (1 - edge.downlink.loss / 100) == pytest.approx(0.001)
    assert model.nodes["car-node"].memory == 2**29
    assert model.services["car-workload"].volumes[0].target == "/data"


def test_the_seeds_scenario_with_names_that_do_not_exist_is_reported_not_fatal():
    model = load_model(SEED)
    scenario = model.scenarios["scenario_network_error"]
    assert "instance_type: unknown label 'car-1'" in scenario.error
    assert scenario.actions[2].type == "horizontal_scaling"
    assert scenario.actions[2].parameters == {"type": "down", "instances": 1}
    assert any("cannot run" in w for w in model.warnings)


def test_bidirectional_jitter_splits_variance():
    m = _builder()
    m.network("lan", bidirectional={"latency": {"delay": "50ms", "deviation": "10ms"}})
    model = _finish(m)
    up, down = model.networks["lan"].uplink, model.networks["lan"].downlink
    assert math.hypot(up.jitter, down.jitter) == pytest.approx(0.010)


def test_builder_builds_the_same_model_as_yaml():
    m = _builder()
    m.network("lan", uplink={"bandwidth": "10Mbps"}, downlink={"bandwidth": "5Mbps"})
    model = _finish(m)
    assert model.networks["lan"].uplink.rate == 10_000_000
    assert model.blueprints[0].replicas == 2


def _builder() -> ModelBuilder:
    m = ModelBuilder()
    m.service("web", image="fogify-net/base:latest", command=["sleep", "infinity"])
    m.node("small", cores=1, clock_speed=1200, memory="256M")
    return m


def _finish(m: ModelBuilder):
    m.blueprint("web", node="small", service="web", networks=[m.networks[0]["name"]], replicas=2)
    return m.build()


# --- malformed models: each error names the field and the problem ------------------------


def _set(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


_DELETE = object()
FOG = "x-fogify"
BAD_MODELS = [
    ((FOG, "networks", 0, "uplink", "bandwidth"), "10Mbs", "x-fogify.networks[0].uplink.bandwidth", "unknown rate unit 'Mbs'"),
    ((FOG, "networks", 0, "uplink", "bandwidth"), "10", "x-fogify.networks[0].uplink.bandwidth", "has no unit"),
    ((FOG, "networks", 0, "uplink", "bandwidth"), "-5Mbps", "x-fogify.networks[0].uplink.bandwidth", "negative"),
    ((FOG, "networks", 0, "uplink", "latency", "delay"), "50 parsecs", "x-fogify.networks[0].uplink.latency.delay", "unknown duration unit 'parsecs'"),
    ((FOG, "networks", 0, "uplink", "latency", "delay"), "50mz", "x-fogify.networks[0].uplink.latency.delay", "unknown duration unit"),
    ((FOG, "networks", 0, "uplink", "drop"), "120%", "x-fogify.networks[0].uplink.drop", "above 100%"),
    ((FOG, "networks", 1, "bidirectional", "latency", "correlation"), "25%", "x-fogify.networks[1].bidirectional.latency.correlation", "needs a deviation"),
    ((FOG, "nodes", 0, "capabilities", "memory"), "4 gigs", "x-fogify.nodes[0].capabilities.memory", "unknown size unit 'gigs'"),
    ((FOG, "nodes", 0, "capabilities", "memory"), "4X", "x-fogify.nodes[0].capabilities.memory", "unknown size unit"),
    ((FOG, "nodes", 1, "capabilities", "processor", "cores"), 1.5, "x-fogify.nodes[1].capabilities.processor.cores", "whole number"),
    ((FOG, "nodes", 1, "capabilities", "processor", "clock_speed"), "fast", "x-fogify.nodes[1].capabilities.processor.clock_speed", "cannot read"),
    ((FOG, "topology", 0, "node"), "mainframe", "x-fogify.topology[0].node", "unknown node 'mainframe'"),
    ((FOG, "topology", 1, "service"), "mec-svc-9", "x-fogify.topology[1].service", "unknown service 'mec-svc-9'"),
    ((FOG, "topology", 2, "networks", 0), "edge-net-9", "x-fogify.topology[2].networks[0]", "unknown network 'edge-net-9'"),
    ((FOG, "topology", 3, "replicas"), -1, "x-fogify.topology[3].replicas", "at least 0"),
    ((FOG, "topology", 3, "replica"), 2, "x-fogify.topology[3].replica", "unknown field"),
    ((FOG, "topology", 4, "label"), "car-workload-1", "x-fogify.topology[4]", "duplicate label 'car-workload-1'"),
    ((FOG, "topology", 4, "label"), "car.2", "x-fogify.topology[4].label", "invalid name 'car.2'"),
    ((FOG, "networks", 2, "name"), "edge-net-1", "x-fogify.networks[2]", "duplicate name 'edge-net-1'"),
    (("services", "mec-svc-1", "image"), _DELETE, "services.mec-svc-1.image", "missing"),
    ((FOG, "topology", 0, "networks", 0), {"name": "internet", "ip": "10.1.2.300"}, "x-fogify.topology[0].networks[0].ip", "invalid IPv4"),
    ((FOG, "topology", 3, "networks", 0), {"name": "edge-net-1", "ip": "10.1.0.5"}, "x-fogify.topology[3].networks[0].ip", "needs replicas: 1"),
    ((FOG, "networks", 0, "links"), [{"from_node": "cloud-server", "to_node": "ghost", "properties": {"latency": {"delay": "1ms"}}}],
     "x-fogify.networks[0].links[0].to_node", "'ghost' is not a blueprint label"),
    ((FOG, "networks", 0, "links"), [{"from_node": "cloud-server", "to_node": "mec-svc-1"}], "x-fogify.networks[0].links[0]", "needs 'properties'"),
    ((FOG, "networks", 0, "capacity"), 2, "x-fogify.networks[0].capacity", "7 instances join a network of capacity 2"),
    ((FOG, "networks", 0, "uplink", "latency", "distribution"), "lognormal", "x-fogify.networks[0].uplink.latency.distribution", "unknown distribution"),
]


@pytest.mark.parametrize("path, value, field, problem", BAD_MODELS, ids=[b[2] + ":" + str(b[3]) for b in BAD_MODELS])
def test_malformed_models_name_the_field(seed, path, value, field, problem):
    doc = copy.deepcopy(seed)
    _set(doc, path, value)
    with pytest.raises(ModelError) as caught:
        _compile(doc)
    assert caught.value.path == field, str(caught.value)
    if problem:
        assert problem in caught.value.problem


def _compile(doc):
    """Parse, then plan: addresses are checked when the plan is made."""
    from fogify_net.compile.plan import compile_model
    from fogify_net.compile.resources import HostFacts

    return compile_model(parse_model(doc), HostFacts(cpu_mhz=2400, cpus=2, memory=2**34))


def test_a_static_ip_outside_the_subnet_is_an_error(seed):
    seed[FOG]["networks"][0]["subnet"] = "10.15.0.0/24"
    seed[FOG]["topology"][0]["networks"][0] = {"name": "internet", "ip": "10.16.0.3"}
    with pytest.raises(ModelError, match="outside network 'internet'"):
        _compile(seed)


def test_a_missing_x_fogify_section_is_an_error(seed):
    del seed[FOG]
    with pytest.raises(ModelError, match="x-fogify: the x-fogify section is missing"):
        parse_model(seed)


# --- actions share the parser ------------------------------------------------------------


def test_actions_in_every_shape_fogify_uses():
    model = load_model(SEED)
    sdk_vertical = parse_action("vertical_scaling", {"instance_type": "mec-svc-1", "instances": 1, "action": "cpu", "value": "+20"}, model=model)
    assert sdk_vertical == VerticalScaling(sdk_vertical.target, "cpu", relative_percent=20.0)
    controller_vertical = parse_action("vertical_scaling", {"instance_type": "mec-svc-1.1", "action": {"action": "memory", "value": "1G"}}, model=model)
    assert controller_vertical.absolute == 2**30 and controller_vertical.target.slot == 1
    sdk_network = parse_action("network", {"instance_type": "mec-svc-1", "instances": 1, "network": {"network": "edge-net-1", "bidirectional": {"latency": {"delay": "100ms"}}}}, model=model)
    assert isinstance(sdk_network, NetworkChange) and sdk_network.uplink.delay == pytest.approx(0.05)
    seed_network = parse_action("network", {"instance_type": "mec-svc-1", "network": "edge-net-1", "uplink": {"latency": {"delay": "50ms"}}}, model=model)
    assert seed_network.downlink is None and seed_network.uplink.delay == pytest.approx(0.05)
    stress = parse_action("stress", {"instance_type": "mec-svc-1", "instances": 1, "action": {"duration": 60, "cpu": 70}}, model=model)
    assert stress == Stress(stress.target, duration=60.0, cpu=70.0)
    scale = parse_action("horizontal_scaling", {"instance_type": "car-workload-1", "instances": 2, "type": "up"}, model=model)
    assert scale == HorizontalScaling(scale.target, up=True, count=2)


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("network", {"instance_type": "mec-svc-1", "network": "edge-net-2", "uplink": {"bandwidth": "1Mbps"}}, "params.network"),
        ("network", {"instance_type": "mec-svc-10", "network": "edge-net-1", "uplink": {}}, "params.instance_type"),
        ("vertical_scaling", {"instance_type": "mec-svc-1", "action": "gpu", "value": "+1"}, "params.action"),
        ("stress", {"instance_type": "mec-svc-1", "action": {"duration": 10}}, "params.action"),
        ("horizontal_scaling", {"instance_type": "mec-svc-1", "type": "sideways"}, "params.type"),
    ],
)
def test_bad_action_parameters_name_the_field(kind, params, field):
    with pytest.raises(ModelError) as caught:
        parse_action(kind, params, model=load_model(SEED))
    assert caught.value.path == field


def test_the_sdk_builders_and_model_builder_speak_one_vocabulary(tmp_path, monkeypatch) -> None:
    """The same model built with Fogify's SDK calls and with ModelBuilder parses to the same Model."""
    from FogifySDK import FogifySDK

    lan = {"bandwidth": "10Mbps", "latency": {"delay": "10ms"}}
    pair = {"properties": {"latency": {"delay": "40ms"}}}
    compose = {"version": "3.7", "services": {"web": {"image": "fogify-net/base:latest"},
                                               "db": {"image": "fogify-net/base:latest"}}}
    monkeypatch.chdir(tmp_path)  # upload_file writes its file here
    (tmp_path / "docker-compose.yaml").write_text(yaml.safe_dump(compose))
    sdk = FogifySDK("http://127.0.0.1:9", "docker-compose.yaml")
    sdk.add_node("small", cpu_cores=1, cpu_freq=1200, memory="256M")
    sdk.add_bidirectional_network("lan", lan)
    sdk.add_link("lan", "web", "db", pair)
    sdk.add_topology_node("web", "web", "small", ["lan"], replicas=2)
    sdk.add_topology_node("db", "db", "small", ["lan"])
    handle = sdk.upload_file()
    from_sdk = parse_model(yaml.safe_load(handle.read()))
    handle.close()

    m = ModelBuilder()
    for name, service in compose["services"].items():
        m.service(name, **service)
    m.node("small", cores=1, clock_speed=1200, memory="256M")
    m.network("lan", bidirectional=lan)
    m.link("lan", "web", "db", **pair)
    m.blueprint("web", node="small", service="web", networks=["lan"], replicas=2)
    m.blueprint("db", node="small", service="db", networks=["lan"])
    assert m.build() == from_sdk
