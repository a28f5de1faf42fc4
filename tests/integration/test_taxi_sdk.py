"""The taxi example through the SDK, on whatever shaping this machine has (netem in the stock-kernel VM).

Deploy examples/taxi/docker-compose.yaml unchanged, read an edge server's metrics
(built-in and the app's own), change its regional network with one SDK action and
see the kernel apply it to a car's round trip, undeploy, and leave nothing behind.
The walkthrough test tells the whole story (stress, scenario, app latencies); this
one is its short, CPU-light part for machines whose CPU is emulated.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import pytest

from FogifySDK import FogifySDK

from .conftest import real_api, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]
COMPOSE = Path(__file__).parents[2] / "examples" / "taxi" / "docker-compose.yaml"
TAXI_IMAGE = "taxi-exp:0.0.1"
# The emulated CPU (FOGIFY_NET_EMULATED_CPU=1, see test_shaping.py) brings a round trip back up to ~5 ms late.
LATE_MS = 5.0 if os.environ.get("FOGIFY_NET_EMULATED_CPU") == "1" else 0.0


@pytest.fixture
def api(tmp_path):
    import docker

    try:
        docker.from_env().images.get(TAXI_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"needs {TAXI_IMAGE} (examples/taxi/build-image.sh)")
    with real_api(tmp_path / "data", interval=1.0, host_mhz=None) as served:
        yield served


def round_trip(controller, fogify: FogifySDK, src: str, dst: str, network: str) -> float:
    """Median ping RTT (ms) from `src` to `dst`'s address on `network`, pinged from src's namespace."""
    address = next(i for i in fogify.status()["instances"] if i["name"] == dst)["networks"][network]["ip"]
    out = controller.emulation.hosts[src].cmd(f"ping -n -c 20 -i 0.05 {address}")
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    assert len(times) >= 15, out  # edge-net-1 drops 0.1%
    return statistics.median(times)


def test_deploy_metrics_and_a_network_action_through_the_sdk(api, tmp_path, monkeypatch):
    url, controller = api
    monkeypatch.chdir(tmp_path)  # deploy() writes fogified-docker-compose.yaml here
    fogify = FogifySDK(url, str(COMPOSE))
    fogify.poll_interval = 0.5
    fogify.deploy(timeout=600)
    try:
        status = fogify.status()
        assert status["status"] == "running" and len(status["instances"]) == 7
        mechanism = status["shaping"]["mechanism"]
        if os.environ.get("FOGIFY_NET_VM") == "1":
            assert mechanism == "netem", "the stock-kernel VM must shape with netem"

        # Metrics: the sampler's columns and the app's own, with records flowing car -> edge.
        def records_arrived() -> bool:
            frame = fogify.get_metrics_from("mec-svc-1.1")
            return "records_received" in frame.columns and frame["records_received"].max() > 0

        assert wait_until(records_arrived, timeout=120, interval=2), "mec-svc-1.1 received no records in 120 s"
        frame = fogify.get_metrics_from("mec-svc-1.1")
        for column in ("cpu_util", "memory", "network_rx_edge-net-1", "network_tx_internet", "records_received"):
            assert column in frame.columns, sorted(frame.columns)

        # One network action: mec-svc-1's regional link goes from 5 ms to 50 ms (host to host, each way).
        # A car's ping to it crosses the car's points (2.5 ms each way) and mec-svc-1's (then 25 ms each way).
        before = round_trip(controller, fogify, "car-workload-1.1", "mec-svc-1.1", "edge-net-1")
        assert 10 - 1 <= before <= 10 * 1.02 + 1 + LATE_MS, f"RTT {before:.2f} ms before, expected 10"
        answer = fogify.update_network("mec-svc-1", "edge-net-1",
                                       {"bidirectional": {"bandwidth": "100Mbps", "latency": {"delay": "50ms"},
                                                          "drop": "0.1%"}})
        assert answer == {"message": "OK", "instances": ["mec-svc-1.1"]}
        after = round_trip(controller, fogify, "car-workload-1.1", "mec-svc-1.1", "edge-net-1")
        assert 55 - 1 <= after <= 55 * 1.02 + 1 + LATE_MS, f"RTT {after:.2f} ms after, expected 55"
        other = round_trip(controller, fogify, "car-workload-2.1", "mec-svc-2.1", "edge-net-2")
        assert 10 - 1 <= other <= 10 * 1.02 + 1 + LATE_MS, f"region 2 kept 10 ms, measured {other:.2f}"

        # The action is in the timeline, and the records keep flowing.
        annotations = fogify.get_annotations().annotations
        assert "NETWORK" in set(annotations["annotation"]), annotations
        received = frame["records_received"].max()
        time.sleep(3)
        assert fogify.get_metrics_from("mec-svc-1.1")["records_received"].max() > received
    finally:
        fogify.undeploy(timeout=600)
    assert controller.status == "idle"
