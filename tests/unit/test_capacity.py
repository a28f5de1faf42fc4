"""A network's capacity and its subnet's addresses bound scale-out, checked before the plan changes."""

from __future__ import annotations

import copy

import pytest

from fogify_net.compile.plan import add_instances, compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.errors import Conflict
from fogify_net.model import ModelBuilder, ModelError

HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)


def plan_of(**lan):
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("box", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps"}, **lan)
    m.network("wan", bidirectional={"bandwidth": "10Mbps"})
    m.blueprint("car", node="box", service="app", networks=["wan", "lan"], replicas=2)
    m.blueprint("edge", node="box", service="app", networks=["lan"])
    return compile_model(m.build(), HOST)


def state(plan):
    return ([i.name for i in plan.instances], plan.next_index,
            {name: copy.copy(n.addresses.used) for name, n in plan.networks.items()})


def test_scale_out_past_capacity_is_a_conflict_naming_the_network_and_nothing_changes():
    plan = plan_of(capacity=4)
    before = state(plan)
    with pytest.raises(Conflict, match=r"^network 'lan' has capacity 4 and holds 3 instances: "
                                       r"2 more of 'car' would make 5$"):
        add_instances(plan, "car", 2)
    assert state(plan) == before
    assert [i.name for i in add_instances(plan, "car", 1)] == ["car.3"]  # up to the capacity is fine
    with pytest.raises(Conflict, match="capacity 4 and holds 4"):
        add_instances(plan, "edge", 1)


def test_scale_out_past_the_subnets_free_addresses_is_a_conflict_and_nothing_changes():
    plan = plan_of(subnet="10.9.0.0/29")  # .2 to .6: five addresses
    add_instances(plan, "edge", 2)
    before = state(plan)
    with pytest.raises(Conflict, match=r"network 'lan' \(subnet 10.9.0.0/29\) has 0 free addresses"):
        add_instances(plan, "car", 1)
    assert state(plan) == before


def test_a_subnet_too_small_for_the_model_is_an_error_naming_it():
    with pytest.raises(ModelError) as caught:
        plan_of(subnet="10.9.0.0/30")
    assert caught.value.path == "x-fogify.networks[0].subnet"
    assert "3 instances join network 'lan'; its subnet 10.9.0.0/30 has 1 addresses" in caught.value.problem
