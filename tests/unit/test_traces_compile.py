"""Traces and moves in the plan: the steps a trace takes, what a step changes, and attachments that move."""

from __future__ import annotations

from itertools import islice

import pytest

from fogify_net.compile.hosts import hosts_file
from fogify_net.compile.plan import attach, compile_model, detach
from fogify_net.compile.resources import HostFacts
from fogify_net.compile.shaping import interface_shaping
from fogify_net.compile.traces import apply_values, direction_values, restore, steps, traced_fields, value_at
from fogify_net.model import ModelBuilder, QoS
from fogify_net.model.schema import QoSPatch, TraceTarget
from fogify_net.model.traces import parse_trace_spec

HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)


def trace(points, **options):
    return parse_trace_spec({"points": points, **options}, "t", "x", None).trace


def plan_of(links: bool = False):
    m = ModelBuilder()
    m.service("app", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("r1", bidirectional={"bandwidth": "10Mbps", "latency": {"delay": "10ms"}})
    m.network("r2", bidirectional={"bandwidth": "20Mbps", "latency": {"delay": "40ms"}})
    m.blueprint("car", node="n", service="app", networks=["r1"], replicas=2)
    m.blueprint("edge", node="n", service="app", networks=["r1", "r2"])
    if links:
        m.link("r1", "car", "edge", properties={"latency": {"delay": "4ms"}})
    return compile_model(m.build(), HOST)


# --- steps -------------------------------------------------------------------------------------


def test_a_stepped_trace_changes_at_its_rows_and_loops():
    t = trace([{"time_s": 0, "bandwidth": 2}, {"time_s": 1, "bandwidth": 10}, {"time_s": 2, "bandwidth": 5}])
    made = [(s.offset, s.values.rate) for s in islice(steps(t), 7)]
    assert made == [(0, 2e6), (1, 10e6), (2, 5e6), (3, 2e6), (4, 10e6), (5, 5e6), (6, 2e6)]


def test_rows_between_grid_points_apply_at_the_next_one_and_unchanged_values_make_no_step():
    t = trace([{"time_s": 0, "delay": 20}, {"time_s": 0.25, "delay": 20}, {"time_s": 0.33, "delay": 30}],
              loop=False, resolution="100ms")
    assert [(s.offset, s.values.delay) for s in steps(t)] == [(0, 0.02), (pytest.approx(0.4), 0.03)]


def test_a_linear_trace_interpolates_on_its_grid_and_wraps_back_to_its_start():
    t = trace([{"time_s": 0, "delay": 20}, {"time_s": 1, "delay": 80}], mode="linear", resolution="250ms")
    made = [(s.offset, round(s.values.delay * 1000, 3)) for s in islice(steps(t), 10)]
    assert made == [(0, 20), (0.25, 35), (0.5, 50), (0.75, 65), (1, 80), (1.25, 65), (1.5, 50), (1.75, 35),
                    (2, 20), (2.25, 35)]
    once = trace([{"time_s": 0, "delay": 20}, {"time_s": 1, "delay": 80}], mode="linear", resolution="500ms",
                 loop=False)
    assert [round(s.values.delay * 1000) for s in steps(once)] == [20, 50, 80]


def test_properties_keep_their_own_points_and_a_constant_trace_ends():
    t = trace([{"time_s": 0, "bandwidth": 1, "delay": 10}, {"time_s": 1, "delay": 30}, {"time_s": 2, "bandwidth": 3}],
              mode="linear", resolution="500ms", loop=False)
    assert value_at(t, 1.0) == QoSPatch(rate=2_000_000, delay=0.03)
    assert value_at(t, 0.5) == QoSPatch(rate=1_500_000, delay=0.02)
    assert list(steps(trace([{"time_s": 0, "delay": 5}]))) == list(islice(steps(trace([{"time_s": 0, "delay": 5}])), 1))


def test_a_paths_values_are_split_per_direction_and_a_directions_kept():
    up, down = direction_values("bidirectional", QoSPatch(rate=10, delay=0.04, loss=19))
    assert up == down and up.rate == 10 and up.delay == pytest.approx(0.02) and up.loss == pytest.approx(10)
    assert direction_values("downlink", QoSPatch(delay=0.04)) == (None, QoSPatch(delay=0.04))


# --- the plan ----------------------------------------------------------------------------------


def test_a_network_trace_drives_every_member_and_restores_what_it_overrode():
    plan = plan_of()
    saved: dict = {}
    changed = apply_values(plan, TraceTarget("r1"), QoSPatch(delay=0.001), None, saved)
    assert changed == {("car.1", "r1"), ("car.2", "r1"), ("edge.1", "r1")}
    car = plan.instance("car.1").interface("r1")
    assert car.uplink == QoS(rate=10_000_000, delay=0.001) and car.downlink == QoS(rate=10_000_000, delay=0.005)
    assert apply_values(plan, TraceTarget("r1"), QoSPatch(delay=0.001), None, saved) == set()
    car.uplink = QoS(rate=1_000_000, delay=0.001)  # an action changed the rate meanwhile: it stays
    assert restore(plan, TraceTarget("r1"), saved, {"delay"}) == {("car.1", "r1"), ("car.2", "r1"),
                                                                  ("edge.1", "r1")}
    assert car.uplink == QoS(rate=1_000_000, delay=0.005)


def test_a_label_trace_drives_its_instances_and_a_network_trace_leaves_them_alone():
    plan = plan_of()
    assert apply_values(plan, TraceTarget("r1", label="car"), QoSPatch(rate=1000), None, {}) == {
        ("car.1", "r1"), ("car.2", "r1")}
    assert apply_values(plan, TraceTarget("r1"), QoSPatch(rate=2000), None, {},
                        skip_labels=frozenset({"car"})) == {("edge.1", "r1")}
    assert plan.instance("car.2").interface("r1").uplink.rate == 1000


def test_a_link_trace_patches_its_rule_or_makes_one_and_restores_it():
    plan = plan_of(links=True)
    saved: dict = {}
    target = TraceTarget("r1", link=("car", "edge"))
    changed = apply_values(plan, target, QoSPatch(loss=5), QoSPatch(loss=5), saved)
    assert changed == {("car.1", "r1"), ("car.2", "r1"), ("edge.1", "r1")}
    rule = plan.networks["r1"].links[0]
    assert rule.uplink.loss == 5 and rule.uplink.delay == pytest.approx(0.002)
    edge_ip = plan.instance("edge.1").interface("r1").ip
    car = plan.instance("car.1")
    assert interface_shaping(plan, car, car.interface("r1")).uplink.toward(edge_ip).loss == 5
    restore(plan, target, saved, {"loss"})
    assert plan.networks["r1"].links[0].uplink.loss is None

    bare = plan_of()
    saved = {}
    apply_values(bare, TraceTarget("r2", link=("edge", "car")), QoSPatch(delay=0.1), None, saved)
    assert len(bare.networks["r2"].links) == 1
    restore(bare, TraceTarget("r2", link=("edge", "car")), saved, {"delay"})
    assert bare.networks["r2"].links == []


def test_traced_fields_are_the_ones_some_point_gives():
    assert traced_fields(trace([{"time_s": 0, "delay": 5}, {"time_s": 1, "loss": 1}])) == {"delay", "loss"}


# --- attachments that move ---------------------------------------------------------------------


def test_detach_then_attach_moves_an_instance_with_the_target_networks_address_shaping_and_names():
    plan = plan_of()
    car = plan.instance("car.1")
    old = detach(plan, car, "r1")
    assert car.interfaces == [] and old.ip not in plan.networks["r1"].addresses.used
    new = attach(plan, car, "r2", 0)
    assert (new.name, new.port, new.network) == ("eth0", old.port, "r2")
    assert new.ip in plan.networks["r2"].subnet and new.mac == "02:66:" + ":".join(
        f"{b:02x}" for b in new.ip.packed)
    assert new.uplink == QoS(rate=20_000_000, delay=0.02)
    edge_hosts = hosts_file(plan, plan.instance("edge.1"))
    assert f"{new.ip}\tcar.1 car tasks.car app car.1.r2 tasks.car.r2" in edge_hosts
    assert str(old.ip) not in edge_hosts
    assert str(new.ip) not in hosts_file(plan, plan.instance("car.2"))  # car.2 stayed on r1 only


def test_a_make_before_break_attachment_takes_a_free_interface_number():
    plan = plan_of()
    car = plan.instance("car.2")
    added = attach(plan, car, "r2", 0)
    assert added.name == "eth1" and [i.network for i in car.interfaces] == ["r2", "r1"]
    detach(plan, car, "r1")
    again = attach(plan, car, "r1")
    assert again.name == "eth0" and again.port.endswith("e0")
