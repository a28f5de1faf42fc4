"""A blueprint's inline network override, with real traffic: its links shape that pair, its firewall rules
filter before the network's, and everyone else keeps the network's shaping."""

from __future__ import annotations

import re
import statistics

import pytest

from fogify_net.model import ModelBuilder

from .conftest import BASE_IMAGE, emulation, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]


def median_rtt(host, address, count: int = 20) -> float:
    out = host.cmd(f"ping -n -c {count} -i 0.02 -W 2 {address}")
    values = [float(v) for v in re.findall(r"time=([\d.]+) ms", out)]
    assert len(values) >= count - 1, out
    return statistics.median(values)


def tcp_open(host, address, port: int) -> bool:
    out = host.cmd(f"timeout 2 bash -c '</dev/tcp/{address}/{port}' && echo open || echo closed")
    return out.strip().endswith("open")


def test_an_inline_overrides_links_and_firewall_rules_act_on_real_traffic():
    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=2000, memory="256M")
    # every host-to-host path on lan: 10 ms one way, so a ping between two plain members takes 20 ms
    m.network("lan", bidirectional={"latency": {"delay": "10ms"}},
              firewall_rules=[{"from": "car", "to": "edge", "type": "DROP"}])
    override = {
        "name": "lan",
        "uplink": {"bandwidth": "100Mbps"}, "downlink": {"bandwidth": "100Mbps"},  # no delay on edge's own end
        # edge -> cloud: 100 ms one way, split over edge's end of the link (50 + 50 ms per ping)
        "links": [{"from_node": "edge", "to_node": "cloud", "properties": {"latency": {"delay": "100ms"}}}],
        # the network drops everything from car to edge; edge's own rule lets its pings in first
        "firewall_rules": [{"from": "car", "to": "edge", "type": "ACCEPT", "protocol": "icmp"}],
    }
    m.blueprint("edge", node="box", service="app", networks=[override])
    m.blueprint("cloud", node="box", service="app", networks=["lan"])
    m.blueprint("car", node="box", service="app", networks=["lan"])
    with emulation(m.build()) as emu:
        ip = {name: emu.plan.instance(f"{name}.1").interface("lan").ip for name in ("edge", "cloud", "car")}
        edge, cloud, car = (emu.hosts[f"{name}.1"] for name in ("edge", "cloud", "car"))
        # edge's end: 50 ms up and 50 ms down toward cloud (the link), cloud's end: 5 + 5 ms (the network)
        assert median_rtt(edge, ip["cloud"]) == pytest.approx(110, abs=4)
        # edge's end has no delay toward anyone else (its override); car's end has the network's 5 + 5 ms
        assert median_rtt(edge, ip["car"]) == pytest.approx(10, abs=3)
        assert median_rtt(cloud, ip["car"]) == pytest.approx(20, abs=3)  # the network, untouched
        server = edge.popen(["iperf3", "-s", "-p", "5201"])
        try:
            assert wait_until(lambda: ":5201" in edge.cmd("ss -ltn"), timeout=5)
            assert tcp_open(cloud, ip["edge"], 5201)
            assert not tcp_open(car, ip["edge"], 5201), "the network's DROP from car to edge let TCP through"
            assert median_rtt(car, ip["edge"], 5) == pytest.approx(10, abs=3)  # edge's ACCEPT icmp came first
        finally:
            server.kill()
            server.wait()
