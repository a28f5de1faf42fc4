"""Packet-level monitoring against a real deployment: traffic counted per flow, served by /packets/."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
import yaml

from .conftest import BASE_IMAGE, real_api, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

PAYLOAD = 2 * 1024 * 1024
PINGS = 5

MODEL = {
    "version": "3.7",
    "services": {"box": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
    "x-fogify": {
        "nodes": [{"name": "small", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000},
                                                     "memory": "256M"}}],
        "networks": [
            {"name": "lan", "bidirectional": {"bandwidth": "50Mbps"}, "packet_level_monitoring": True},
            {"name": "wan", "bidirectional": {"bandwidth": "50Mbps"}},
        ],
        "topology": [
            {"node": "small", "service": "box", "label": "server", "networks": ["lan", "wan"]},
            {"node": "small", "service": "box", "label": "client", "networks": ["lan"]},
            {"node": "small", "service": "box", "label": "edge", "networks": [
                {"name": "wan", "bidirectional": {"bandwidth": "50Mbps"}, "packet_level_monitoring": True}]},
            {"node": "small", "service": "box", "label": "quiet", "networks": ["wan"]},
        ],
    },
}


@pytest.fixture(scope="module")
def deployed(machine, tmp_path_factory):
    with real_api(tmp_path_factory.mktemp("data"), interval=1.0, flow_period=0.5) as (url, controller):
        r = requests.post(f"{url}/topology/", files={"file": ("model.yaml", yaml.safe_dump(MODEL))})
        assert r.status_code == 200, r.text
        final = wait_until(lambda: (lambda r: r if r.headers["X-Fogify-Status"] != "deploying" else None)(
            requests.get(f"{url}/topology/")), timeout=60, interval=0.2)
        assert final.headers["X-Fogify-Status"] == "running", final.text
        assert "fogify_net_flows" in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        yield url, controller
        requests.delete(f"{url}/topology/")
        wait_until(lambda: controller.status == "idle", timeout=60)


def ip(controller, name, network):
    return str(controller.emulation.plan.instance(name).interface(network).ip)


def packets(url, **params):
    r = requests.get(f"{url}/packets/", params=params)
    assert r.status_code == 200, r.text
    return r.json()["res"]


def test_a_tcp_transfer_is_counted_under_both_watched_ends(deployed):
    url, controller = deployed
    hosts = controller.emulation.hosts
    server = hosts["server.1"].popen(["iperf3", "-s", "-1", "-p", "5301"])
    try:
        wait_until(lambda: ":5301" in hosts["server.1"].cmd("ss -ltn"), timeout=5)
        # Paced below the link's 50 Mbit/s, so what is sent arrives before the test ends.
        out = hosts["client.1"].cmd(
            f"iperf3 -J -b 20M -c {ip(controller, 'server.1', 'lan')} -p 5301 -n {PAYLOAD}")
    finally:
        server.wait(timeout=10)
    received = json.loads(out)["end"]["sum_received"]["bytes"]
    assert received >= 0.9 * PAYLOAD, out

    def data_bytes():
        rows = [r for r in packets(url, service="client", packet_type="tcp")
                if r["dest_port"] == 5301 and r["src_instance"] == "client.1"]
        total = sum(r["size"] for r in rows)
        return total if total >= received else None

    counted = wait_until(data_bytes, timeout=10, interval=0.5)
    assert counted is not None, packets(url, service="client")
    # What arrived, plus TCP/IP headers (3.6% of 1448-byte segments, less with offload batches) and the
    # control connection; a flow counted twice would be twice that.
    assert received <= counted <= PAYLOAD * 1.06
    rows = packets(url, packet_type="tcp")
    assert {r["service_id"] for r in rows} == {"client", "server"}
    for row in rows:
        assert row["network"] == "lan"
        assert {row["src_instance"], row["dest_instance"]} == {"client.1", "server.1"}
        assert row["count"] > 0 and row["timestamp"].endswith("GMT")
    assert all(r["service_id"] == "server" for r in packets(url, service="server.1"))


def test_an_override_watches_its_label_only_and_icmp_counts_every_echo(deployed):
    url, controller = deployed
    hosts = controller.emulation.hosts
    out = hosts["edge.1"].cmd(f"ping -n -q -c {PINGS} -i 0.1 {ip(controller, 'server.1', 'wan')}")
    assert f"{PINGS} received" in out, out
    out = hosts["quiet.1"].cmd(f"ping -n -q -c {PINGS} -i 0.1 {ip(controller, 'server.1', 'wan')}")
    assert f"{PINGS} received" in out, out

    def echoes():
        rows = packets(url, packet_type="icmp")
        return rows if sum(r["count"] for r in rows) >= 2 * PINGS else None

    rows = wait_until(echoes, timeout=10, interval=0.5)
    assert rows, packets(url, packet_type="icmp")
    assert {r["service_id"] for r in rows} == {"edge"}  # quiet.1 and server.1 are not watched on wan
    assert {(r["src_instance"], r["dest_instance"]) for r in rows} == {("edge.1", "server.1"), ("server.1", "edge.1")}
    assert sum(r["count"] for r in rows) == 2 * PINGS
    assert sum(r["size"] for r in rows) == 2 * PINGS * 84  # 20 bytes of IP, 8 of ICMP, 56 of data


def test_bad_filters_are_4xx_and_delete_empties(deployed):
    url, _ = deployed
    r = requests.get(f"{url}/packets/", params={"packet_type": "sctp"})
    assert r.status_code == 400 and r.json()["message"].startswith("packet_type:")
    r = requests.get(f"{url}/packets/", params={"service": "nobody"})
    assert r.status_code == 404 and r.json()["message"].startswith("service:")
    assert requests.get(f"{url}/packets/", params={"service": "quiet"}).json() == {"res": []}
    assert requests.delete(f"{url}/packets/").json() == {"message": "The packets are empty now"}
    assert packets(url) == []
