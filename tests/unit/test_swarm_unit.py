"""The Swarm backend's pure parts: placement constraints, the agent's wire format and commands."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from fogify_net.backends.swarm.agent.shaping import Installed, loss_ruleset, shaping_commands
from fogify_net.backends.swarm.services import constraints
from fogify_net.backends.swarm.wire import TaskShaping, direction_from_json, direction_to_json
from fogify_net.compile.shaping import DirectionShaping, PeerShaping
from fogify_net.model.schema import QoS

SUBNET = IPv4Network("10.98.1.0/24")


def test_placement_becomes_swarm_constraints() -> None:
    assert constraints((("hostname", "edge-1"), ("role", "worker"), ("zone", "edge"))) == [
        "node.hostname==edge-1", "node.role==worker", "node.labels.zone==edge"]
    assert constraints(()) == []


def test_shaping_travels_to_the_agent_unchanged() -> None:
    direction = DirectionShaping(QoS(rate=10_000_000, loss=1.0),
                                 (PeerShaping(IPv4Address("10.98.1.7"), QoS(rate=2_000_000)),))
    assert direction_from_json(direction_to_json(direction)) == direction
    from fogify_net.backends.swarm.wire import AttachmentShaping

    task = TaskShaping("c1" * 32, "web.1", (AttachmentShaping("lan", "n1" * 10, SUBNET, direction,
                                                              DirectionShaping(QoS()), (("10.98.1.5", 0.05),)),))
    assert TaskShaping.from_json(json.loads(json.dumps(task.to_json()))) == task


def test_first_shaping_of_a_task_builds_htb_up_and_ifb_down() -> None:
    installed = Installed("eth1", "fgnifb1")
    ip, tc = shaping_commands(installed, SUBNET, DirectionShaping(QoS(rate=20_000_000)),
                              DirectionShaping(QoS(rate=8_000_000)))
    assert ip == ["link add fgnifb1 type ifb", "link set fgnifb1 up"]
    assert tc[0] == "qdisc replace dev eth1 root handle 1: htb default 1"
    assert any(line.startswith("class replace dev eth1 parent 1: classid 1:1 htb rate 20000000bit") for line in tc)
    assert "action mirred egress redirect dev fgnifb1" in next(line for line in tc if "mirred" in line)
    assert any(line.startswith("class replace dev fgnifb1 parent 1: classid 1:1 htb rate 8000000bit") for line in tc)


def test_a_later_change_replaces_the_live_class() -> None:
    installed = Installed("eth0", "fgnifb0", DirectionShaping(QoS(rate=20_000_000)),
                          DirectionShaping(QoS(rate=8_000_000)))
    ip, tc = shaping_commands(installed, SUBNET, DirectionShaping(QoS(rate=20_000_000)),
                              DirectionShaping(QoS(rate=100_000_000)))
    assert ip == []
    assert tc[0].startswith("class replace dev fgnifb0 parent 1: classid 1:1 htb rate 100000000bit")
    assert not [line for line in tc if "root" in line or "ingress" in line or "eth0" in line]


def test_loss_is_dropped_on_the_receive_path_per_peer() -> None:
    peer = IPv4Address("10.98.1.7")
    downlink = DirectionShaping(QoS(loss=10.0), (PeerShaping(peer, QoS(loss=50.0)),))
    text = loss_ruleset({"eth0": downlink, "eth1": DirectionShaping(QoS())})
    assert "hook prerouting" in text and "eth1" not in text
    chain = text[text.index("chain down_eth0"):text.index("}", text.index("chain down_eth0"))].splitlines()[1:]
    assert [line.strip() for line in chain if line.strip()] == [
        "ip saddr 10.98.1.7 numgen random mod 1000000 < 500000 drop",  # the links rule's peer
        "ip saddr 10.98.1.7 return",  # ... not also the default
        "numgen random mod 1000000 < 100000 drop",
    ]
    assert 'iifname "eth0" jump down_eth0' in text
    # 0.05% (half of a bidirectional 0.1%) is kept: per-mille thresholds once rounded it to nothing.
    senders = loss_ruleset({}, senders={"eth0": [("10.98.1.5", 0.05), ("10.98.1.4", 0.05)]})
    assert 'iifname "eth0" ip saddr { 10.98.1.4, 10.98.1.5 } numgen random mod 1000000 < 500 drop' in senders
    with_partition = loss_ruleset({}, ["ip saddr { 10.98.1.2 } ip daddr { 10.98.1.3 } drop"])
    assert "    ip saddr { 10.98.1.2 } ip daddr { 10.98.1.3 } drop\n" in with_partition


def _backend_with(plan):
    """A SwarmBackend without a Swarm: only what _adopt needs (node hostnames)."""
    import threading
    from types import SimpleNamespace

    from fogify_net.backends.swarm import SwarmBackend

    backend = SwarmBackend.__new__(SwarmBackend)
    backend.plan, backend._tasks, backend.lock = plan, {}, threading.RLock()
    node = SimpleNamespace(attrs={"Description": {"Hostname": "node-1"}})
    backend.client = SimpleNamespace(nodes=SimpleNamespace(get=lambda node_id: node))
    return backend


def _task(slot: int, ip: str) -> dict:
    return {"ID": f"t{slot}", "Slot": slot, "NodeID": "n1", "Status": {"ContainerStatus": {"ContainerID": f"c{slot}"}},
            "NetworksAttachments": [{"Network": {"Spec": {"Name": "lan"}}, "Addresses": [f"{ip}/24"]}]}


def test_instances_follow_swarm_slots_and_addresses() -> None:
    from fogify_net.compile.plan import add_instances, compile_model
    from fogify_net.compile.resources import HostFacts
    from fogify_net.model import ModelBuilder

    m = ModelBuilder()
    m.service("app", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="64M")
    m.network("lan", subnet="10.98.3.0/24")
    m.blueprint("web", node="n", service="app", networks=["lan"], replicas=3)
    plan = compile_model(m.build(), HostFacts(cpu_mhz=1000.0, cpus=2, memory=2**32))
    backend = _backend_with(plan)
    backend._adopt("web", [_task(1, "10.98.3.9"), _task(2, "10.98.3.8"), _task(3, "10.98.3.7")])
    assert str(plan.instance("web.1").interface("lan").ip) == "10.98.3.9"  # Swarm's IPAM, not the plan's

    # Scale-in: Swarm stopped slot 2, not the highest; the plan loses web.2 and keeps web.3.
    gone = backend._adopt("web", [_task(1, "10.98.3.9"), _task(3, "10.98.3.7")])
    assert [i.name for i in gone] == ["web.2"]
    assert [i.name for i in plan.instances_of("web")] == ["web.1", "web.3"]
    assert sorted(backend._tasks) == ["web.1", "web.3"]

    # Scale-out: the plan adds web.4, Swarm fills slot 2; the new instance takes Swarm's name.
    add_instances(plan, "web", 1)
    backend._adopt("web", [_task(1, "10.98.3.9"), _task(2, "10.98.3.6"), _task(3, "10.98.3.7")])
    assert [i.name for i in plan.instances_of("web")] == ["web.1", "web.2", "web.3"]
    assert str(plan.instance("web.2").interface("lan").ip) == "10.98.3.6"
    assert backend._tasks["web.2"]["container"] == "c2"


def test_overlay_delay_rules_jump_once_and_bypass_a_dead_helper() -> None:
    from fogify_net.compile.netfilter import DelaySlot, iptables_delay_rules

    peer = IPv4Address("10.98.1.7")
    queues = {DelaySlot("veth1a", "uplink", None): 1, DelaySlot("veth1a", "uplink", peer): 2,
              DelaySlot("veth1a", "downlink", peer): None}
    text = iptables_delay_rules(queues, jumps=True, bypass=True)
    lines = text.splitlines()
    peer_rule = ("-A FOGIFY_NET_UP -m physdev --physdev-in veth1a -d 10.98.1.7/32 "
                 "-j NFQUEUE --queue-num 2 --queue-bypass")
    default = "-A FOGIFY_NET_UP -m physdev --physdev-in veth1a -j NFQUEUE --queue-num 1 --queue-bypass"
    assert lines.index(peer_rule) < lines.index(default)  # the first match wins: the peer's queue
    assert "-A FOGIFY_NET_DOWN -m physdev --physdev-out veth1a -s 10.98.1.7/32 -j RETURN" in lines
    assert sum(line.startswith("-A PREROUTING") for line in lines) == 1
    assert "PREROUTING" not in iptables_delay_rules(queues) and "bypass" not in iptables_delay_rules(queues)


def test_status_table_names_the_swarm_node_of_each_instance() -> None:
    from fogify_net.render import status_table

    instance = {"name": "edge.1", "node": "small", "cpus": 0.5, "memory": 2**27,
                "networks": {"wan": {"ip": "10.98.1.2", "uplink": "20Mbit/s", "downlink": "8Mbit/s"}}}
    report = {"status": "running", "message": "", "instances": [instance],
              "shaping": {"mechanism": "userspace", "not_applied": [], "placement": {"edge.1": "node-2"}}}
    lines = status_table(report).splitlines()
    header = next(line for line in lines if line.startswith("INSTANCE"))
    assert header.split()[:3] == ["INSTANCE", "HOST", "NODE"]
    assert lines[lines.index(header) + 2].split()[:3] == ["edge.1", "node-2", "small"]
    del report["shaping"]["placement"]
    assert "HOST" not in status_table(report)


def test_fidelity_readings_travel_from_the_agent_unchanged() -> None:
    from fogify_net.backends.swarm.wire import FidelityRequest, SampleRequest, readings_from_json, readings_to_json
    from fogify_net.host.fidelity import DelayQueue, HostCpu, InstanceCpu, LinkQueue, Readings

    readings = Readings(
        {"node-2": HostCpu("node-2", 12.5, ((10, 100), (20, 100)), 5000, 3)},
        {"a.1": InstanceCpu("a.1", "node-2", 12.5, 0.5, 10**9, 40, 3, 2 * 10**8, None)},
        [LinkQueue("a.1", "lan", "uplink", "10.0.0.3", "node-2", 12.5, 10**7, 1500, 1, 0, 2, 1, 1500)],
        [DelayQueue("a.1", "lan", "downlink", "", "node-2", 3, 20.0, 10, 9, 0, 1, tuple(range(21)))],
        ["network 1234567890 on node-2 (its helper is down)"])
    assert readings_from_json(json.loads(json.dumps(readings_to_json(readings)))) == readings
    request = FidelityRequest("node-2", {"0123456789ab": SampleRequest("a.1", 0.5, 2**27, {"lan": "10.0.0.0/24"})})
    assert FidelityRequest.from_json(json.loads(json.dumps(request.to_json()))) == request
    with pytest.raises(ValueError, match="not a Docker id"):  # the agent's 400
        FidelityRequest.from_json({"node": "node-2", "containers": {"../etc": request.to_json()["containers"]
                                                                    ["0123456789ab"]}})
