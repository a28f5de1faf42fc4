"""The compile layer: plan, names, limits, shaping and the commands it produces, without root."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from fogify_net.compile.hosts import hosts_file
from fogify_net.compile.links import container_commands
from fogify_net.compile.naming import BRIDGE_PATTERN, IFNAMSIZ, PORT_PATTERN, bridge_name
from fogify_net.compile.netfilter import delay_slots, iptables_delay_rules, nft_ruleset
from fogify_net.compile.plan import add_instances, compile_model, remove_instances
from fogify_net.compile.resources import HostFacts
from fogify_net.compile.shaping import DirectionShaping, PeerShaping, interface_shaping, plan_shaping
from fogify_net.compile.tc import direction_commands, leaf_spec, netem_ignores
from fogify_net.model import ModelBuilder, QoS, load_model

SEED = Path(__file__).parents[1] / "fixtures" / "seed-taxi.yaml"
HOST = HostFacts(cpu_mhz=2800, cpus=2, memory=2**34)


@pytest.fixture
def plan():
    return compile_model(load_model(SEED), HOST)


def test_instances_are_named_label_dot_slot_with_kernel_safe_interface_names(plan):
    assert [i.name for i in plan.instances] == [
        "cloud-server.1", "mec-svc-1.1", "mec-svc-2.1", "car-workload-1.1", "car-workload-1.2",
        "car-workload-2.1", "car-workload-2.2"]
    for instance in plan.instances:
        assert instance.container == f"fogify_{instance.name}"  # as Fogify's tasks: docker ps -f name=fogify_<label>
        for interface in instance.interfaces:
            assert PORT_PATTERN.match(interface.port) and len(interface.port) <= IFNAMSIZ
    for network in plan.networks.values():
        assert BRIDGE_PATTERN.match(network.bridge)
    env = plan.instance("car-workload-2.1").environment()
    assert env["FOGIFY_NAME"] == "car-workload-2" and env["FOGIFY_SERVICE_NAME"] == "car-workload"
    assert env["FOGIFY_INSTANCE"] == "car-workload-2.1" and env["NODE_TYPE"] == "IOT_NODE"


def test_long_network_names_get_short_unique_bridges():
    first = bridge_name("a-very-long-network-name")
    second = bridge_name("a-very-long-network-name", {first})
    assert len(first) <= IFNAMSIZ and len(second) <= IFNAMSIZ and first != second


def test_cpu_limit_is_cores_times_clock_over_host_clock(plan):
    cloud = plan.instance("cloud-server.1")
    assert cloud.cpus == pytest.approx(4 * 1400 / 2800)
    car = plan.instance("car-workload-1.1")
    assert car.cpu_quota == 25_000 and car.cpu_period == 100_000
    assert car.memory == 2**29


def test_a_node_below_the_smallest_quota_gets_it_and_a_warning_saying_so():
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("tiny", cores=1, clock_speed=5)  # 5 MHz, as a real user's file has it: 0.0018 CPUs of 2800 MHz
    m.network("lan")
    m.blueprint("node", node="tiny", service="app", networks=["lan"])
    plan = compile_model(m.build(), HOST)
    assert plan.instance("node.1").cpu_quota == 1_000
    assert plan.warnings == ["node: a node of 0.0018 CPUs is below the kernel's smallest quota; it gets 0.01 CPUs"]


def test_each_network_gets_its_own_subnet_and_unique_addresses(plan):
    subnets = [n.subnet for n in plan.networks.values()]
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])
    for name, network in plan.networks.items():
        ips = [i.interface(name).ip for i in plan.members(name)]
        assert len(set(ips)) == len(ips) and all(ip in network.subnet for ip in ips)
        assert network.subnet.network_address + 1 not in ips  # .1 stays free for a gateway


def test_each_interface_gets_a_mac_made_from_its_address_so_a_restart_keeps_it(plan):
    macs = [i.mac for instance in plan.instances for i in instance.interfaces]
    assert len(set(macs)) == len(macs)
    interface = plan.instance("mec-svc-1.1").interfaces[0]
    assert interface.mac == "02:66:" + ":".join(f"{b:02x}" for b in interface.ip.packed)
    lines = container_commands(plan.instance("mec-svc-1.1"))
    assert lines.index(f"link set {interface.name} address {interface.mac}") < lines.index(
        f"link set {interface.name} up")


def test_static_ip_defines_the_subnet_and_is_kept():
    m = ModelBuilder()
    m.service("s", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="64M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps"})
    m.blueprint("a", node="n", service="s", networks=[{"name": "lan", "ip": "10.15.0.3"}])
    m.blueprint("b", node="n", service="s", networks=["lan"], replicas=2)
    plan = compile_model(m.build(), HOST)
    assert plan.networks["lan"].subnet == IPv4Network("10.15.0.0/24")
    assert plan.instance("a.1").interface("lan").ip == IPv4Address("10.15.0.3")
    assert {i.interface("lan").ip for i in plan.instances_of("b")}.isdisjoint({IPv4Address("10.15.0.3")})


def test_scaling_takes_the_next_slots_and_gives_back_the_highest(plan):
    added = add_instances(plan, "car-workload-1", 2)
    assert [i.name for i in added] == ["car-workload-1.3", "car-workload-1.4"]
    assert len({i.index for i in plan.instances}) == len(plan.instances)
    removed = remove_instances(plan, "car-workload-1", 3)
    assert [i.name for i in removed] == ["car-workload-1.2", "car-workload-1.3", "car-workload-1.4"]
    assert [i.name for i in plan.instances_of("car-workload-1")] == ["car-workload-1.1"]


def test_uplink_is_the_hosts_egress_and_downlink_the_ports(plan):
    shaping = plan_shaping(plan)
    cloud = plan.instance("cloud-server.1").interface("internet")
    s = shaping[cloud.port]
    assert s.device == "eth0" and s.uplink.default.rate == 10_000_000 and s.downlink.default.rate == 5_000_000


def test_link_rules_override_the_network_for_that_peer_only_in_both_directions(plan):
    from fogify_net.model.networks import parse_link

    rule = parse_link({"from_node": "cloud-server", "to_node": "mec-svc-1", "bidirectional": True,
                       "properties": {"bandwidth": "1Mbps", "latency": {"delay": "200ms"}}}, "l")
    plan.networks["internet"].links.append(rule)
    cloud = plan.instance("cloud-server.1")
    mec = plan.instance("mec-svc-1.1")
    s = interface_shaping(plan, cloud, cloud.interface("internet"))
    assert [p.peer for p in s.uplink.peers] == [mec.interface("internet").ip]
    assert s.uplink.peers[0].qos.rate == 1_000_000 and s.uplink.peers[0].qos.delay == pytest.approx(0.1)
    assert s.uplink.default.rate == 10_000_000  # other peers keep the network's shaping
    mirrored = interface_shaping(plan, mec, mec.interface("internet"))
    assert [p.peer for p in mirrored.downlink.peers] == [cloud.interface("internet").ip]
    car = plan.instance("car-workload-1.1")
    assert not interface_shaping(plan, car, car.interface("internet")).uplink.peers


NET = IPv4Network("10.100.0.0/24")


def test_tc_commands_install_htb_with_a_class_per_peer():
    direction = DirectionShaping(QoS(rate=10_000_000), (PeerShaping(IPv4Address("10.100.0.7"), QoS(rate=1_000_000)),))
    lines = direction_commands("eth0", None, direction, NET, "dst", kernel_delay=False)
    assert lines[0] == "qdisc replace dev eth0 root handle 1: htb default 1"
    assert any("classid 1:1 htb rate 10000000bit" in line for line in lines)
    assert any("classid 1:9 htb rate 1000000bit" in line for line in lines)
    assert lines[-1] == ("filter replace dev eth0 parent 1: protocol ip prio 1 handle 800::9 u32 "
                         "match ip dst 10.100.0.7/32 flowid 1:9")


def test_a_rate_change_replaces_the_live_class_and_nothing_else():
    old = DirectionShaping(QoS(rate=10_000_000))
    new = DirectionShaping(QoS(rate=2_000_000))
    lines = direction_commands("eth0", old, new, NET, "dst", kernel_delay=False)
    assert lines[0].startswith("class replace dev eth0 parent 1: classid 1:1 htb rate 2000000bit")
    assert not any(line.startswith(("qdisc del", "qdisc replace dev eth0 root")) for line in lines)
    assert direction_commands("eth0", old, old, NET, "dst", kernel_delay=False) == []
    assert direction_commands("eth0", old, DirectionShaping(QoS()), NET, "dst", False) == ["qdisc del dev eth0 root"]


def test_netem_leaf_carries_delay_jitter_and_loss_when_the_kernel_has_it():
    qos = QoS(rate=10_000_000, delay=0.025, jitter=0.005, correlation=25, loss=0.05, distribution="normal")
    assert leaf_spec(qos, kernel_delay=True).startswith(
        "netem delay 25000us 5000us 25% distribution normal loss 0.05% limit ")
    assert leaf_spec(qos, kernel_delay=False) == "pfifo limit 100"
    assert leaf_spec(QoS(rate=10**9), kernel_delay=False) == "pfifo limit 8257"


def test_with_netem_arp_has_a_class_that_drops_like_the_default_but_never_waits():
    direction = DirectionShaping(QoS(rate=10_000_000, delay=0.05, loss=1.0))
    lines = direction_commands("eth0", None, direction, NET, "dst", kernel_delay=True)
    assert "qdisc replace dev eth0 parent 1:1 handle 11: netem delay 50000us loss 1% limit 1000" in lines
    assert any(line.startswith("class replace dev eth0 parent 1: classid 1:fff htb rate 100000000000bit")
               for line in lines)
    assert "qdisc replace dev eth0 parent 1:fff handle 100f: netem loss 1% limit 1000" in lines
    assert lines[-1] == "filter add dev eth0 parent 1: protocol arp prio 2 u32 match u32 0 0 flowid 1:fff"
    # the user-space mechanism never delays ARP (its delay line takes IPv4 only): no class needed
    assert not any("fff" in line for line in direction_commands("eth0", None, direction, NET, "dst", False))


def test_a_delay_change_leaves_arp_alone_and_a_loss_change_reaches_it():
    old = DirectionShaping(QoS(delay=0.05, loss=1.0))
    slower = direction_commands("eth0", old, DirectionShaping(QoS(delay=0.1, loss=1.0)), NET, "dst", True)
    assert slower == ["qdisc replace dev eth0 parent 1:1 handle 11: netem delay 100000us loss 1% limit 12385"]
    lossier = direction_commands("eth0", old, DirectionShaping(QoS(delay=0.05, loss=5.0)), NET, "dst", True)
    assert lossier[-1] == "qdisc replace dev eth0 parent 1:fff handle 100f: netem loss 5% limit 1000"
    lossless = direction_commands("eth0", old, DirectionShaping(QoS(delay=0.05)), NET, "dst", True)
    assert lossless[-1].startswith("qdisc replace dev eth0 parent 1:fff handle 100f: pfifo limit ")


def test_netem_says_it_leaves_delay_correlation_out_and_the_user_space_mechanism_does_not():
    from fogify_net.backends.local.shaper import Shaper

    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("box", cores=1, clock_speed=1000, memory="128M")
    m.network("net", uplink={"latency": {"delay": "100ms", "deviation": "40ms", "correlation": "75%"}})
    m.blueprint("n", node="box", service="app", networks=["net"], replicas=2)
    plan = compile_model(m.build(), HOST)
    missing = Shaper("netem", "/nonexistent").unshaped(plan)
    assert [line.split(":")[0] for line in missing] == ["n.1 net uplink", "n.2 net uplink"]
    assert "delay correlation 75%" in missing[0] and "--shaping userspace" in missing[0]
    assert Shaper("userspace", "/nonexistent").unshaped(plan) == []
    assert netem_ignores(QoS(delay=0.1, jitter=0.04)) is None  # jitter alone is netem's to do


def test_userspace_mechanism_puts_loss_in_nftables_on_the_receive_path(plan):
    shaping = plan_shaping(plan)
    ruleset = nft_ruleset(plan, shaping, loss=True)
    port = plan.instance("cloud-server.1").interface("internet").port
    assert f"chain uplink_{port} {{\n    numgen random mod 1000000 < 1000 drop" in ruleset
    assert "type filter hook prerouting priority 0" in ruleset  # uplink: as frames enter the bridge
    assert "type filter hook forward priority 0" in ruleset  # downlink: towards the receiving port
    assert "numgen" not in nft_ruleset(plan, shaping, loss=False)


def test_partitions_drop_both_ways(plan):
    plan.partitions.add(("mec-svc-1", "cloud-server", None))
    ruleset = nft_ruleset(plan, plan_shaping(plan), loss=False)
    mec = plan.instance("mec-svc-1.1").interface("internet").ip
    cloud = plan.instance("cloud-server.1").interface("internet").ip
    assert f"ip saddr {{ {mec} }} ip daddr {{ {cloud} }} drop" in ruleset
    assert f"ip saddr {{ {cloud} }} ip daddr {{ {mec} }} drop" in ruleset


def test_delay_line_queues_uplink_before_and_downlink_after_the_bridge(plan):
    slots = delay_slots(plan_shaping(plan))
    queues = {slot: 20000 + i for i, slot in enumerate(slots)}
    rules = iptables_delay_rules(queues)
    port = plan.instance("cloud-server.1").interface("internet").port
    assert f"-A FOGIFY_NET_UP -m physdev --physdev-in {port} -j NFQUEUE" in rules
    assert f"-A FOGIFY_NET_DOWN -m physdev --physdev-out {port} -j NFQUEUE" in rules


def test_names_resolve_only_on_shared_networks(plan):
    car = hosts_file(plan, plan.instance("car-workload-1.1"))
    mec1 = plan.instance("mec-svc-1.1")
    assert f"{mec1.interface('edge-net-1').ip}\tmec-svc-1.1 mec-svc-1 tasks.mec-svc-1 " in car
    assert "tasks.mec-svc-1.edge-net-1" in car and "tasks.cloud-server.internet" in car
    assert "tasks.mec-svc-2.edge-net-2" not in car
    cloud = hosts_file(plan, plan.instance("cloud-server.1"))
    assert f"{mec1.interface('internet').ip}\tmec-svc-1.1 mec-svc-1 " in cloud  # the one shared network
