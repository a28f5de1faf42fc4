"""Packet-level monitoring without root: which traffic is counted, reading nft's set, deltas, and the store."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

from fogify_net.compile.flows import (
    Flow,
    flow_port_chains,
    flow_port_table,
    flow_ruleset,
    flow_teardown,
    monitored,
    parse_flow_set,
)
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.model import ModelBuilder
from fogify_net.monitoring.flows import flow_rows
from fogify_net.monitoring.store import MetricStore

HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)


def plan(watch_lan: bool = True, watch_edge_wan: bool = True):
    m = ModelBuilder()
    m.service("box", image="fogify-net/base:latest")
    m.node("small", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps"}, packet_level_monitoring=watch_lan)
    m.network("wan", bidirectional={"bandwidth": "10Mbps"})
    m.blueprint("server", node="small", service="box", networks=["lan", "wan"])
    m.blueprint("client", node="small", service="box", networks=["lan"], replicas=2)
    wan = {"name": "wan", "bidirectional": {"bandwidth": "10Mbps"}, "packet_level_monitoring": watch_edge_wan}
    m.blueprint("edge", node="small", service="box", networks=[wan])
    return compile_model(m.build(), HOST)


def ip(p, name, network):
    return p.instance(name).interface(network).ip


def test_a_network_flag_watches_every_label_on_it_and_an_override_only_its_own():
    assert monitored(plan()) == {"lan": {"server", "client"}, "wan": {"edge"}}
    assert monitored(plan(watch_lan=False)) == {"wan": {"edge"}}


def test_no_table_without_monitoring_and_one_rule_pair_over_the_watched_subnets():
    assert flow_ruleset(plan(watch_lan=False, watch_edge_wan=False)) is None
    p = plan()
    ruleset = flow_ruleset(p)
    for network in ("lan", "wan"):
        assert str(p.networks[network].subnet) in ruleset
    assert "update @flows { ip saddr . ip daddr . ip protocol . th sport . th dport counter }" in ruleset
    assert ruleset.startswith("table bridge fogify_net_flows\ndelete table bridge fogify_net_flows\n")


def test_with_open_vswitch_a_netdev_table_and_a_counting_chain_per_watched_instance_port():
    assert flow_port_table(plan(watch_lan=False, watch_edge_wan=False)) is None
    p = plan()
    table = flow_port_table(p)
    assert table.startswith("table netdev fogify_net_flows\ndelete table netdev fogify_net_flows\n")
    assert "set flows {" in table and "chain" not in table  # the chains come with the ports
    server = p.instance("server.1")
    chains = flow_port_chains(p, server.interfaces)
    for interface in server.interfaces:  # on lan and wan, both watched (wan for edge's override)
        chain = f"count_{interface.port}"
        assert (f'add chain netdev fogify_net_flows {chain} {{ type filter hook ingress device '
                f'"{interface.port}" priority -20; policy accept; }}') in chains
        # declared again on every call: flushed first, so a chain that survived gets no second rules
        assert chains.index(f"flush chain netdev fogify_net_flows {chain}") < chains.index(f"add rule netdev "
                                                                                          f"fogify_net_flows {chain}")
    assert chains.count("add rule") == 2 * len(server.interfaces)
    assert "iifname" not in chains and str(p.networks["lan"].subnet) in chains
    assert flow_port_chains(plan(watch_lan=False), p.instance("client.1").interfaces) == ""  # lan only


def test_teardown_removes_both_families_tables():
    assert flow_teardown() == ("table bridge fogify_net_flows\ndelete table bridge fogify_net_flows\n"
                               "table netdev fogify_net_flows\ndelete table netdev fogify_net_flows\n")


NFT_JSON = {"nftables": [
    {"metainfo": {"version": "1.0.6"}},
    {"set": {"family": "bridge", "name": "flows", "table": "fogify_net_flows", "elem": [
        {"elem": {"val": {"concat": ["10.1.0.3", "10.1.0.2", "icmp", 0, 0]}, "expires": 3599,
                  "counter": {"packets": 3, "bytes": 252}}},
        {"elem": {"val": {"concat": ["10.1.0.2", "10.1.0.3", "tcp", 55496, 5299]}, "expires": 3599,
                  "counter": {"packets": 34, "bytes": 1050389}}},
    ]}},
]}


def test_nft_json_becomes_flows_with_counters():
    flows = parse_flow_set(json.dumps(NFT_JSON))
    assert flows == {
        Flow(IPv4Address("10.1.0.3"), IPv4Address("10.1.0.2"), "icmp", 0, 0): (3, 252),
        Flow(IPv4Address("10.1.0.2"), IPv4Address("10.1.0.3"), "tcp", 55496, 5299): (34, 1050389),
    }
    assert parse_flow_set(json.dumps({"nftables": [{"set": {"name": "flows"}}]})) == {}


def test_rows_carry_what_was_sent_since_the_last_read_with_both_ends_named():
    p = plan(watch_lan=False)
    edge, server = ip(p, "edge.1", "wan"), ip(p, "server.1", "wan")
    flow = Flow(edge, server, "udp", 4000, 5000)
    first = flow_rows(p, {flow: (10, 1000)}, {})
    assert first == [{
        "network": "wan", "src_ip": str(edge), "dest_ip": str(server), "protocol": "udp",
        "src_port": 4000, "dest_port": 5000, "count": 10, "size": 1000,
        "src_instance": "edge.1", "dest_instance": "server.1", "src_label": "edge", "dest_label": "server",
        "src_watched": True, "dest_watched": False,
    }]
    assert flow_rows(p, {flow: (10, 1000)}, {flow: (10, 1000)}) == []  # nothing new: no row
    assert flow_rows(p, {flow: (15, 1600)}, {flow: (10, 1000)})[0]["size"] == 600
    assert flow_rows(p, {flow: (2, 200)}, {flow: (10, 1000)})[0]["count"] == 2  # expired and came back


def test_the_store_lists_a_row_under_each_watched_end_and_filters(tmp_path):
    p = plan()
    client, server = ip(p, "client.1", "lan"), ip(p, "server.1", "lan")
    edge, wan_server = ip(p, "edge.1", "wan"), ip(p, "server.1", "wan")
    store = MetricStore(tmp_path / "fogify.db")
    store.add_packets(100.0, flow_rows(p, {Flow(client, server, "tcp", 40000, 5201): (5, 5000)}, {}))
    store.add_packets(105.0, flow_rows(p, {Flow(edge, wan_server, "icmp", 0, 0): (3, 252)}, {}))
    rows = store.packets()
    assert [(r["service_id"], r["protocol"]) for r in rows] == [("client", "tcp"), ("server", "tcp"),
                                                               ("edge", "icmp")]
    assert set(rows[0]) == {"id", "service_id", "timestamp", "ts", "network", "src_ip", "dest_ip", "protocol",
                            "src_port", "dest_port", "count", "size", "src_instance", "dest_instance"}
    assert [r["service_id"] for r in store.packets("server.1")] == ["server"]
    assert [r["service_id"] for r in store.packets("edge")] == ["edge"]
    assert store.packets("serv") == []  # exact names only
    assert [r["protocol"] for r in store.packets(protocol="icmp")] == ["icmp"]
    assert [r["ts"] for r in store.packets(from_ts=100.0)] == [105.0]
    assert [r["ts"] for r in store.packets(to_ts=105.0)] == [100.0, 100.0]
    store.clear_packets()
    assert store.packets() == []
    store.close()


def test_the_dry_run_shows_the_flow_table_only_when_a_network_is_watched(tmp_path):
    from fogify_net.dryrun import dry_run

    document = {
        "services": {"box": {"image": "fogify-net/base:latest"}},
        "x-fogify": {
            "nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000},
                                                     "memory": "128M"}}],
            "networks": [{"name": "lan", "bidirectional": {"bandwidth": "10Mbps"}}],
            "topology": [{"node": "n", "service": "box", "label": "a", "networks": ["lan"]}],
        },
    }
    path = tmp_path / "model.yaml"
    path.write_text(json.dumps(document))
    assert "fogify_net_flows" not in dry_run(str(path), shaping="userspace")
    document["x-fogify"]["networks"][0]["packet_level_monitoring"] = True
    path.write_text(json.dumps(document))
    assert "table bridge fogify_net_flows {" in dry_run(str(path), shaping="userspace")
