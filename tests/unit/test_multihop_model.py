"""Multi-hop networks in the model and the plan: switches, switch links, routers, routes, single hosts.

Plain Fogify files must compile to exactly what they compiled to before this extension: the
fixture plans-of-plain-files.json holds every name, address, limit and command the plans of the
two plain files asked for when the extension did not exist (commit 6e02156).
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from fogify_net.compile.hosts import hosts_file
from fogify_net.compile.links import bridge_commands, container_commands, switch_link_commands, veth_commands
from fogify_net.compile.netfilter import delay_slots, iptables_delay_rules, nft_ruleset
from fogify_net.compile.paths import end_to_end, trace
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.compile.shaping import plan_shaping
from fogify_net.compile.tc import direction_commands, leaf_spec
from fogify_net.model import ModelBuilder, ModelError, QoS, load_model

ROOT = Path(__file__).parents[2]
HOST = HostFacts(cpu_mhz=2800, cpus=2, memory=2**34)


def kernel_work(path: Path) -> dict:
    """Every name, address, limit and command a plan asks for (the fixture's format)."""
    plan = compile_model(load_model(path), HOST)
    bridges = {name: n.bridge for name, n in plan.networks.items()}
    shaping = plan_shaping(plan)
    tc = {}
    for kernel_delay in (True, False):
        for port, s in sorted(shaping.items()):
            subnet = plan.networks[s.network].subnet
            tc[f"{port} {kernel_delay}"] = (direction_commands(s.device, None, s.uplink, subnet, "dst", kernel_delay)
                                            + direction_commands(port, None, s.downlink, subnet, "src", kernel_delay))
    slots = delay_slots(shaping)
    return {
        "networks": {n.name: [n.bridge, str(n.subnet), bridge_commands(n.bridge, n.name)]
                     for n in plan.networks.values()},
        "instances": [[i.name, i.container, i.cpu_quota, i.cpu_period, i.memory, i.service.image,
                       veth_commands(i, 1234, bridges), container_commands(i), hosts_file(plan, i)]
                      for i in plan.instances],
        "tc": tc,
        "nft": [nft_ruleset(plan, shaping, loss=True), nft_ruleset(plan, shaping, loss=False)],
        "delay": iptables_delay_rules({slot: n for n, slot in enumerate(sorted(slots, key=str))}),
    }


def test_plain_fogify_files_compile_to_the_same_kernel_work_as_before_the_extension():
    before = json.loads((ROOT / "tests" / "fixtures" / "plans-of-plain-files.json").read_text())
    for path in (ROOT / "tests" / "fixtures" / "seed-taxi.yaml", ROOT / "examples" / "taxi" / "docker-compose.yaml"):
        assert json.loads(json.dumps(kernel_work(path))) == before[path.name], path.name


def chain() -> ModelBuilder:
    """a on s1 -- s2 -- s3 where router r joins lan to wan, where b lives."""
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("n", cores=1, clock_speed=1400, memory="128M")
    m.network("lan", subnet="10.0.0.0/24", switches=["s1", "s2", "s3"],
              uplink={"latency": {"delay": "1ms"}}, downlink={"latency": {"delay": "2ms"}},
              switch_links=[{"from": "s1", "to": "s2",
                             "symmetric": {"bandwidth": "10Mbps", "latency": {"delay": "10ms"}}},
                            {"from": "s2", "to": "s3", "forward": {"latency": {"delay": "5ms"}},
                             "backward": {"bandwidth": "5Mbps", "drop": "1%"}}])
    m.network("wan", subnet="10.0.1.0/24", bidirectional={"latency": {"delay": "20ms"}})
    m.blueprint("a", node="n", service="app", networks=[{"name": "lan", "switch": "s1", "interface": "a-eth0"}],
                single=True, routes=[{"to": "default", "via": "10.0.0.1"}])
    m.blueprint("r", node="n", service="app", forwarding=True, single=True,
                networks=[{"name": "lan", "switch": "s3", "ip": "10.0.0.1"}, {"name": "wan", "ip": "10.0.1.1"}])
    m.blueprint("b", node="n", service="app", networks=["wan"], routes=[{"to": "10.0.0.0/24", "via": "10.0.1.1"}])
    return m


def test_a_network_of_several_switches_gets_a_bridge_each_and_a_veth_pair_per_switch_link():
    plan = compile_model(chain().build(), HOST)
    lan = plan.networks["lan"]
    assert lan.switches == {"s1": "fgn-s1", "s2": "fgn-s2", "s3": "fgn-s3"} and lan.bridge == "fgn-s1"
    first, second = lan.switch_links
    assert (first.name, first.source_port, first.target_port) == ("s1-s2", "fgnl1a", "fgnl1b")
    assert first.forward == first.backward == QoS(rate=10_000_000, delay=0.01)
    assert second.forward == QoS(delay=0.005) and second.backward == QoS(rate=5_000_000, loss=1.0)
    bridges = {"s1": "fgn-s1", "s2": "fgn-s2", "s3": "fgn-s3"}
    assert switch_link_commands(first, bridges) == [
        "link add name fgnl1a type veth peer name fgnl1b",
        "link set fgnl1a alias fogify-net:lan:s1-s2", "link set fgnl1a master fgn-s1", "link set fgnl1a up",
        "link set fgnl1b alias fogify-net:lan:s1-s2", "link set fgnl1b master fgn-s2", "link set fgnl1b up"]
    # Open vSwitch: no master, the ports go into OVS's database (ovs-vsctl add-port) once made
    assert switch_link_commands(first, bridges, master=False) == [
        "link add name fgnl1a type veth peer name fgnl1b",
        "link set fgnl1a alias fogify-net:lan:s1-s2", "link set fgnl1a up",
        "link set fgnl1b alias fogify-net:lan:s1-s2", "link set fgnl1b up"]
    a = plan.instance("a")
    assert "link set fgnh1e0 master fgn-s1" in veth_commands(a, 99, bridges)
    # Mininet-named hosts get Containernet's container names, a blueprint's replicas Fogify's
    assert (a.container, plan.instance("r").container, plan.instance("b.1").container) == (
        "mn.a", "mn.r", "fogify_b.1")
    assert "link set fgnh2e0 master fgn-s3" in veth_commands(plan.instance("r"), 99, {**bridges, "wan": "fgn-wan"})


def test_a_switch_link_is_shaped_like_a_host_link_each_direction_on_its_own_egress():
    plan = compile_model(chain().build(), HOST)
    shaping = plan_shaping(plan)["fgnl2a"]  # s2 -> s3, seen from s2
    assert shaping.root and shaping.port == "fgnl2a" and shaping.device == "fgnl2b"
    assert shaping.downlink.default == QoS(delay=0.005)  # leaves s2 towards s3: forward
    assert shaping.uplink.default == QoS(rate=5_000_000, loss=1.0)  # enters s2 from s3: backward
    subnet = plan.networks["lan"].subnet
    assert direction_commands("fgnl2b", None, shaping.uplink, subnet, "dst", False)[:2] == [
        "qdisc replace dev fgnl2b root handle 1: htb default 1",
        "class replace dev fgnl2b parent 1: classid 1:1 htb rate 5000000bit ceil 5000000bit burst 15000 "
        "cburst 15000 quantum 62500"]
    nft = nft_ruleset(plan, plan_shaping(plan), loss=True)
    assert '"fgnl2a" : jump uplink_fgnl2a' in nft  # backward loss on the receive path into s2
    slots = {(slot.port, slot.direction): qos for slot, qos in delay_slots(plan_shaping(plan)).items()}
    assert slots[("fgnl2a", "downlink")] == QoS(delay=0.005) and ("fgnl2a", "uplink") not in slots
    assert slots[("fgnl1a", "downlink")].delay == slots[("fgnl1a", "uplink")].delay == 0.01


def test_routers_forward_and_routes_are_installed_after_the_addresses():
    plan = compile_model(chain().build(), HOST)
    a, r, b = plan.instance("a"), plan.instance("r"), plan.instance("b.1")
    assert (a.name, r.name, b.name) == ("a", "r", "b.1") and r.forwarding and not a.forwarding
    assert container_commands(a) == ["link set lo up", "link set a-eth0 address 02:66:0a:00:00:02",
                                     "addr add 10.0.0.2/24 dev a-eth0", "link set a-eth0 up",
                                     "route replace default via 10.0.0.1"]
    assert container_commands(b)[-1] == "route replace 10.0.0.0/24 via 10.0.1.1"


def test_paths_add_delays_take_the_narrowest_rate_and_compound_loss_across_hops_and_routers():
    plan = compile_model(chain().build(), HOST)
    there, back = end_to_end(plan)[0][0]
    assert (there.source, there.target, there.error) == ("a", "b.1", None)
    assert [h.what for h in there.hops] == ["a up (lan)", "s1->s2", "s2->s3", "r down (lan)", "r (forwards)",
                                            "r up (wan)", "b.1 down (wan)"]
    assert there.delay == pytest.approx(0.001 + 0.010 + 0.005 + 0.002 + 0.010 + 0.010)  # wan's 20ms is split
    assert there.rate == 10_000_000 and there.loss == 0 and there.routers == ["r"]
    assert back.rate == 5_000_000 and back.loss == pytest.approx(1.0)
    assert back.delay == pytest.approx(0.010 + 0.010 + 0.001 + 0.010 + 0.002)  # s3->s2 has no delay


def test_a_path_says_why_a_packet_does_not_arrive():
    m = chain()
    m.topology[2]["routes"] = []
    plan = compile_model(m.build(), HOST)
    assert trace(plan, plan.instance("b.1"), IPv4Address("10.0.0.2")).error == "b.1 has no route to 10.0.0.2"
    plan.networks["lan"].switch_links[0].up = False
    assert trace(plan, plan.instance("a"), IPv4Address("10.0.0.1")).error == "switch link s1-s2 is down"
    m = chain()
    m.topology[1]["forwarding"] = False
    plan = compile_model(m.build(), HOST)
    assert "r does not forward" in trace(plan, plan.instance("a"), IPv4Address("10.0.1.2")).error


@pytest.mark.parametrize(("change", "path", "problem"), [
    (lambda m: m.networks[0]["switch_links"].append({"from": "s3", "to": "s1"}),
     "x-fogify.networks[0].switch_links[2]", "closes a loop"),
    (lambda m: m.networks[0]["switch_links"].pop(),
     "x-fogify.networks[0].switch_links", "switch 's3' is not linked to 's1'"),
    (lambda m: m.networks[0]["switch_links"][0].update({"to": "s9"}),
     "x-fogify.networks[0].switch_links[0].to", "unknown switch 's9'"),
    (lambda m: m.networks[1].update({"switches": ["s2"]}),
     "x-fogify.networks[1].switches[0]", "also a switch of network 'lan'"),
    (lambda m: m.topology[0]["networks"][0].update({"switch": "wan"}),
     "x-fogify.topology[0].networks[0].switch", "unknown switch 'wan'"),
    (lambda m: m.topology[0]["networks"][0].update({"interface": "a-very-long-ifname"}),
     "x-fogify.topology[0].networks[0].interface", "invalid interface name"),
    (lambda m: m.topology[0]["networks"][0].update({"unnumbered": True, "ip": "10.0.0.9"}),
     "x-fogify.topology[0].networks[0].unnumbered", "no ip"),
    (lambda m: m.topology[0].update({"replicas": 2}), "x-fogify.topology[0].replicas", "exactly one instance"),
    (lambda m: m.topology[0]["routes"].append({"to": "10.9.0.0/33", "via": "10.0.0.1"}),
     "x-fogify.topology[0].routes[1].to", "invalid subnet"),
    (lambda m: m.topology[0]["routes"].append({"to": "default", "dev": "eth7"}),
     "x-fogify.topology[0].routes[1].dev", "unknown interface 'eth7'"),
    (lambda m: m.topology[0]["routes"].append({"to": "default"}), "x-fogify.topology[0].routes[1]", "via"),
])
def test_mistakes_in_the_extension_name_their_field(change, path, problem):
    m = chain()
    change(m)
    with pytest.raises(ModelError) as error:
        m.build()
    assert error.value.path == path and problem in error.value.problem


def test_a_gateway_off_the_instances_networks_is_refused_when_subnets_are_known():
    m = chain()
    m.topology[2]["routes"] = [{"to": "default", "via": "10.0.5.1"}]
    with pytest.raises(ModelError) as error:
        compile_model(m.build(), HOST)
    assert error.value.path == "x-fogify.topology[2].routes[0].via" and "on none of b's networks" in str(error.value)


def test_unnumbered_interfaces_get_no_address_no_name_and_a_stable_mac():
    m = chain()
    m.topology[2]["networks"] = ["wan", {"name": "lan", "switch": "s2", "unnumbered": True}]
    plan = compile_model(m.build(), HOST)
    b = plan.instance("b.1")
    assert b.interface("lan").ip is None and b.interface("lan").cidr is None
    assert b.interface("lan").mac.startswith("02:67:")
    assert "addr add" not in " ".join(line for line in container_commands(b) if "eth1" in line)
    assert "b.1" not in hosts_file(plan, plan.instance("a"))  # a shares only lan with b, where b has no address


def test_node_profiles_may_give_cpus_exactly_or_nothing_for_the_whole_machine():
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("half", cpus=0.5, shares=512, cpuset="0")
    m.node("free")
    m.network("lan")
    m.blueprint("x", node="half", service="app", networks=["lan"])
    m.blueprint("y", node="free", service="app", networks=["lan"])
    plan = compile_model(m.build(), HOST)
    x, y = plan.instance("x.1"), plan.instance("y.1")
    assert x.cpu_quota == 50_000 and x.node.cpu_shares == 512 and x.node.cpuset == "0"
    assert y.cpus == HOST.cpus and y.memory == HOST.memory and plan.warnings == []
    m.nodes[0]["capabilities"]["processor"]["cores"] = 2
    with pytest.raises(ModelError, match="either cpus or cores"):
        m.build()
    m.nodes[0]["capabilities"] = {"memory": None}  # left out means no limit; written empty is a mistake
    with pytest.raises(ModelError, match=r"capabilities.memory: empty"):
        m.build()


def test_a_declared_queue_sizes_the_leaf_fifo_and_netem():
    assert leaf_spec(QoS(rate=10_000_000, queue=20), kernel_delay=False) == "pfifo limit 20"
    assert leaf_spec(QoS(delay=0.01, queue=30), kernel_delay=True) == "netem delay 10000us limit 30"
    assert QoS(rate=10**6, queue=20).describe() == "1Mbit/s queue 20"


def test_switch_link_actions_parse_both_orders_and_check_the_model():
    from fogify_net.model.actions import SwitchLinkChange, parse_action

    model = chain().build()
    down = parse_action("link_down", {"switches": ["s2", "s1"]}, model=model)
    assert down == SwitchLinkChange(("s2", "s1"), up=False)
    change = parse_action("switch_link", {"switches": ["s1", "s2"], "symmetric": {"latency": {"delay": "3ms"}},
                                          "forward": {"bandwidth": "1Mbps"}}, model=model)
    assert change.forward.values() == {"delay": 0.003, "rate": 1_000_000}
    assert change.backward.values() == {"delay": 0.003}
    with pytest.raises(ModelError, match="no switch link joins 's1' and 's3'"):
        parse_action("switch_link", {"switches": ["s1", "s3"], "up": True}, model=model)
    with pytest.raises(ModelError, match="give up"):
        parse_action("switch_link", {"switches": ["s1", "s2"]}, model=model)


def test_subnets_stay_free_of_each_other_with_several_switches():
    plan = compile_model(chain().build(), HOST)
    assert plan.networks["lan"].subnet == IPv4Network("10.0.0.0/24")
    assert plan.switch_network("s2") == "lan" and plan.switch_link("s3", "s2").name == "s2-s3"


def test_a_failed_switch_link_change_rolls_back_the_plan_and_reapplies_it(tmp_path, monkeypatch):
    """switch_link and link_down on a switch link go the apply-or-rollback way of every plan change."""
    import time

    import yaml

    from fogify_net import backends
    from fogify_net.controller import Controller
    from fogify_net.host.capabilities import Capabilities
    from fogify_net_api import create_app

    monkeypatch.setitem(backends.REGISTRY, "fake", "tests.support.fakebackend:FakeBackend")
    nothing = Capabilities(root=False, docker=False, mininet=False, htb=False, netem=False, nft_bridge=False,
                           nfqueue=False, physdev=False, br_netfilter=False, ovs_kernel=False, delayd=None,
                           cgroup="v1")
    controller = Controller(data_dir=tmp_path, run_dir=str(tmp_path / "run"), capabilities=nothing,
                            host_mhz=2000.0, backend="fake", interval=3600, allow_host_access=True)
    try:
        client = create_app(controller).test_client()
        text = yaml.safe_dump(chain().document())
        assert client.post("/topology/", data={"file": text}).status_code == 200
        deadline = time.monotonic() + 5
        while controller.status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        emulation = controller.emulation
        link = emulation.plan.switch_link("s1", "s2")
        before = (link.forward, link.backward, link.up)

        emulation.fail_reshape = 1
        response = client.post("/actions/switch_link/", json={"params": {
            "switches": ["s2", "s1"], "forward": {"bandwidth": "1Mbps"}}})
        assert response.status_code == 500
        assert (link.forward, link.backward, link.up) == before
        assert emulation.calls[-2:] == ["reshape", "reshape"]  # the failed one, then the previous state again

        emulation.fail_reshape = 1
        response = client.post("/actions/link_down/", json={"params": {"switches": ["s1", "s2"]}})
        assert response.status_code == 500 and link.up

        response = client.post("/actions/switch_link/", json={"params": {
            "switches": ["s2", "s1"], "forward": {"bandwidth": "1Mbps"}, "up": False}})
        assert response.status_code == 200, response.get_json()
        assert link.backward.rate == 1_000_000 and link.forward == before[0] and not link.up
        assert client.post("/actions/switch_link/", json={"params": {"switches": ["s9", "s1"], "up": True}}
                           ).status_code in (400, 404)
    finally:
        controller.close()


def test_a_trace_on_a_switch_link_drives_its_two_directions_and_restores_them():
    from fogify_net.compile.traces import apply_values, direction_values, restore, traced_fields
    from fogify_net.model.schema import QoSPatch, TraceTarget

    m = chain()
    m.networks[0]["switch_links"][0]["trace"] = {"points": [{"time_s": 0, "delay": 30}, {"time_s": 1, "delay": 50}]}
    model = m.build()
    bound = {t.name: t for t in model.traces}["s1-s2@lan"]
    assert bound.target == TraceTarget("lan", switch_link=("s1", "s2"))
    assert bound.target.describe() == "switch link s1-s2 on lan"
    plan = compile_model(model, HOST)
    saved: dict = {}
    up, down = direction_values(bound.spec.direction, bound.spec.trace.points[0].values, bound.target)
    assert up == down == QoSPatch(delay=0.03)  # one cable: each direction whole, as `symmetric`
    assert apply_values(plan, bound.target, up, down, saved) == {("s1-s2", "lan")}
    cable = plan.networks["lan"].switch_links[0]
    assert cable.forward == cable.backward == QoS(rate=10_000_000, delay=0.03)  # the rate stays
    assert plan_shaping(plan)["fgnl1a"].downlink.default.delay == 0.03
    assert apply_values(plan, bound.target, up, down, saved) == set()  # the same values: nothing to change
    assert restore(plan, bound.target, saved, traced_fields(bound.spec.trace)) == {("s1-s2", "lan")}
    assert cable.forward == cable.backward == QoS(rate=10_000_000, delay=0.01)


def test_a_switch_links_trace_file_is_uploaded_with_the_model_and_a_misspelt_key_is_named():
    from fogify_net.model.traces import model_trace_files

    m = chain()
    m.networks[0]["switch_links"][1]["trace"] = "cell.csv"
    assert model_trace_files({"x-fogify": {"networks": m.networks}}) == ["cell.csv"]
    m = chain()
    m.networks[0]["switch_links"][0]["traces"] = "cell.csv"
    with pytest.raises(ModelError, match=r"switch_links\[0\]"):
        m.build()


def test_a_trace_action_starts_an_inline_trace_on_a_switch_link_named_either_way_round():
    from fogify_net.model.actions import parse_action
    from fogify_net.model.schema import TraceTarget

    model = chain().build()
    points = [{"time_s": 0, "delay": "30ms"}]
    action = parse_action("trace", {"network": "lan", "switches": ["s3", "s2"], "points": points,
                                    "direction": "uplink"}, model=model)
    assert action.inline.target == TraceTarget("lan", switch_link=("s2", "s3"))
    assert action.inline.spec.direction == "downlink"  # s3 -> s2 is the cable's backward
    assert action.name == "s2-s3@lan/downlink"
    same_way = parse_action("trace", {"network": "lan", "switches": ["s2", "s3"], "points": points}, model=model)
    assert same_way.inline.spec.direction == "bidirectional"
    with pytest.raises(ModelError, match=r"switches: no switch link (of network 'lan' )?joins 's1' and 's3'"):
        parse_action("trace", {"network": "lan", "switches": ["s1", "s3"], "points": points}, model=model)
    with pytest.raises(ModelError, match=r"switches: give switches, a label or a link"):
        parse_action("trace", {"network": "lan", "switches": ["s1", "s2"], "instance_type": "a",
                               "points": points}, model=model)
