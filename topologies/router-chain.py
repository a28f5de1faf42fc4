"""A chain of routers between two LANs: a multi-hop path with static routes, hop by hop shaped.

    ha-1 ..           10.60.1.0/24    10.60.2.0/24           hb-1 ..
    ha-k --(lan-a)-- r1 --(hop-1)-- r2 --(hop-2)-- ... -- rN --(lan-b)-- hb-k
         10.60.0.0/24                                            10.60.255.0/24

Routers are containers that forward (x-fogify `forwarding: true`); every host and router gets
static routes (x-fogify `routes`), computed here: hosts go through their LAN's router, a router
sends what lies left of it (lan-a, the hops before its own) to its left neighbour and what lies
right to its right one, so every address answers from everywhere (`pingall` in `fogify-net cli`).
Each hop network is shaped `hop_bandwidth` and `hop_delay` one way (Fogify's bidirectional, split
between its two ends); the LANs are `lan_bandwidth` and `lan_delay`. So from ha-1 to hb-1 a packet
sees 2 x lan_delay + (routers - 1) x hop_delay one way, and the narrowest of the rates.

Parameters (fogify-net deploy topologies/router-chain --param routers=4 ...):
  routers        routers in the chain, at least 1 (default 3)
  hosts          hosts on each LAN (default 1)
  hop_delay      one way across a hop between routers (default 10ms)
  hop_bandwidth  a hop's bandwidth (default 20Mbps)
  lan_delay      one way across a LAN (default 1ms)
  lan_bandwidth  a LAN's bandwidth (default 100Mbps)

Scenario `cut-hop-1`: the first hop goes down for 10 seconds (r1's link on hop-1), then back up.
"""

from __future__ import annotations

from fogify_net.model import ModelBuilder

IMAGE = "fogify-net/base:latest"


def build(params: dict) -> ModelBuilder:
    routers = int(params.get("routers", 3))
    hosts = int(params.get("hosts", 1))
    if routers < 1 or routers > 250:
        raise ValueError("routers: between 1 and 250")
    hop = {"bandwidth": str(params.get("hop_bandwidth", "20Mbps")),
           "latency": {"delay": str(params.get("hop_delay", "10ms"))}}
    lan = {"bandwidth": str(params.get("lan_bandwidth", "100Mbps")),
           "latency": {"delay": str(params.get("lan_delay", "1ms"))}}
    lan_a, lan_b = "10.60.0.0/24", "10.60.255.0/24"
    m = ModelBuilder()
    m.service("app", image=IMAGE, command=["sleep", "infinity"])
    m.node("host-node", cores=1, clock_speed=1000, memory="128M")
    m.node("router-node", cores=1, clock_speed=1000, memory="128M")
    m.network("lan-a", subnet=lan_a, bidirectional=lan)
    m.network("lan-b", subnet=lan_b, bidirectional=lan)
    for i in range(1, routers):
        m.network(f"hop-{i}", subnet=f"10.60.{i}.0/24", bidirectional=hop)
    for i in range(1, routers + 1):
        networks, routes = [], []
        if i == 1:
            networks.append({"name": "lan-a", "ip": "10.60.0.1"})
        else:
            networks.append({"name": f"hop-{i - 1}", "ip": f"10.60.{i - 1}.2"})
            left = [lan_a] + [f"10.60.{j}.0/24" for j in range(1, i - 1)]
            routes += [{"to": subnet, "via": f"10.60.{i - 1}.1"} for subnet in left]
        if i == routers:
            networks.append({"name": "lan-b", "ip": "10.60.255.1"})
        else:
            networks.append({"name": f"hop-{i}", "ip": f"10.60.{i}.1"})
            right = [f"10.60.{j}.0/24" for j in range(i + 1, routers)] + [lan_b]
            routes += [{"to": subnet, "via": f"10.60.{i}.2"} for subnet in right]
        m.blueprint(f"r{i}", node="router-node", service="app", networks=networks, single=True,
                    forwarding=True, routes=routes)
    for side, subnet, gateway in (("a", lan_a, "10.60.0.1"), ("b", lan_b, "10.60.255.1")):
        for j in range(1, hosts + 1):
            m.blueprint(f"h{side}-{j}", node="host-node", service="app", single=True,
                        networks=[{"name": f"lan-{side}", "ip": subnet.replace(".0/24", f".{10 + j}")}],
                        routes=[{"to": "default", "via": gateway}])
    if routers > 1:
        m.scenario("cut-hop-1", [
            {"time": 2, "instance_type": "r1", "action": {"type": "link_down", "parameters": {"network": "hop-1"}}},
            {"time": 10, "instance_type": "r1", "action": {"type": "link_up", "parameters": {"network": "hop-1"}}},
        ])
    return m
