"""A blueprint's inline network override: its shaping, links and firewall rules are applied, never dropped."""

from __future__ import annotations

import pytest

from fogify_net.compile.netfilter import filter_rules
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.compile.shaping import interface_shaping
from fogify_net.model import ModelBuilder, ModelError

HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)


def model(override: dict, network: dict | None = None):
    """edge (with `override` on lan), cloud and car on one network `lan`."""
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("box", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "100Mbps", "latency": {"delay": "10ms"}}, **(network or {}))
    m.blueprint("edge", node="box", service="app", networks=[{"name": "lan", **override}])
    m.blueprint("cloud", node="box", service="app", networks=["lan"])
    m.blueprint("car", node="box", service="app", networks=["lan"], replicas=2)
    return m.build()


def test_an_overrides_link_shapes_that_pair_and_leaves_the_others_to_the_override():
    plan = compile_model(model({
        "uplink": {"bandwidth": "5Mbps"}, "downlink": {"bandwidth": "5Mbps"},
        "links": [{"from_node": "edge", "to_node": "cloud", "bidirectional": True,
                   "properties": {"latency": {"delay": "200ms"}, "bandwidth": "1Mbps"}}],
    }), HOST)
    edge, cloud = plan.instance("edge.1"), plan.instance("cloud.1")
    s = interface_shaping(plan, edge, edge.interface("lan"))
    assert s.uplink.default.rate == 5_000_000  # the override's own shaping for every other peer
    assert [p.peer for p in s.uplink.peers] == [cloud.interface("lan").ip]
    assert s.uplink.peers[0].qos.rate == 1_000_000 and s.uplink.peers[0].qos.delay == pytest.approx(0.1)
    mirrored = interface_shaping(plan, cloud, cloud.interface("lan"))  # bidirectional: cloud's end too
    assert [p.peer for p in mirrored.uplink.peers] == [edge.interface("lan").ip]
    assert mirrored.uplink.default.rate == 100_000_000
    car = plan.instance("car.1")
    assert not interface_shaping(plan, car, car.interface("lan")).uplink.peers


def test_an_overrides_link_comes_after_the_networks_so_it_wins_for_the_same_pair():
    network_link = {"from_node": "edge", "to_node": "cloud", "properties": {"latency": {"delay": "50ms"}}}
    plan = compile_model(model(
        {"bidirectional": {"bandwidth": "5Mbps"},
         "links": [{"from_node": "edge", "to_node": "cloud", "properties": {"latency": {"delay": "300ms"}}}]},
        {"links": [network_link]}), HOST)
    assert [link.target for link in plan.networks["lan"].links] == ["cloud", "cloud"]
    edge = plan.instance("edge.1")
    peer = interface_shaping(plan, edge, edge.interface("lan")).uplink.peers[0]
    assert peer.qos.delay == pytest.approx(0.15)


def test_an_overrides_firewall_rules_are_checked_before_the_networks():
    plan = compile_model(model(
        {"bidirectional": {"bandwidth": "5Mbps"},
         "firewall_rules": [{"from": "car", "to": "edge", "type": "ACCEPT", "protocol": "udp", "to_port": 53}]},
        {"firewall_rules": [{"from": "car", "to": "edge", "type": "DROP"}]}), HOST)
    cars = ", ".join(str(i.interface("lan").ip) for i in plan.instances_of("car"))
    edge = plan.instance("edge.1").interface("lan").ip
    assert filter_rules(plan) == [
        f"ip saddr {{ {cars} }} ip daddr {{ {edge} }} meta l4proto udp th dport 53 accept",
        f"ip saddr {{ {cars} }} ip daddr {{ {edge} }} drop",
    ]


@pytest.mark.parametrize("override, field, problem", [
    ({"links": [{"from_node": "car", "to_node": "cloud", "properties": {"latency": {"delay": "1ms"}}}]},
     "x-fogify.topology[0].networks[0].links[0].from_node", "must name 'edge' as from_node or to_node"),
    ({"firewall_rules": [{"from": "car", "to": "cloud", "type": "DROP"}]},
     "x-fogify.topology[0].networks[0].firewall_rules[0].from", "must name 'edge' as from or to"),
    ({"links": [{"from_node": "edge", "to_node": "ghost", "properties": {"latency": {"delay": "1ms"}}}]},
     "x-fogify.topology[0].networks[0].links[0].to_node", "'ghost' is not a blueprint label on network 'lan'"),
    ({"capacity": 3}, "x-fogify.topology[0].networks[0].capacity", "belongs to network 'lan' as a whole"),
    ({"subnet": "10.9.0.0/24"}, "x-fogify.topology[0].networks[0].subnet", "belongs to network 'lan' as a whole"),
])
def test_what_an_override_cannot_say_is_an_error_naming_its_field(override, field, problem):
    with pytest.raises(ModelError) as caught:
        model({"bidirectional": {"bandwidth": "5Mbps"}, **override}, {"capacity": 10})
    assert caught.value.path == field, str(caught.value)
    assert problem in caught.value.problem


def test_an_override_may_repeat_the_networks_capacity_and_subnet():
    built = model({"bidirectional": {"bandwidth": "5Mbps"}, "capacity": 10, "subnet": "10.9.0.0/24"},
                  {"capacity": 10, "subnet": "10.9.0.0/24"})
    assert built.blueprint("edge").networks[0].override.capacity == 10
