"""Smoke test of the taxi app without the emulator: the three roles as local processes on loopback.

Run: /opt/fogify-net/venv/bin/pytest examples/taxi/tests -q
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import requests
from taxi_helpers import MAIN, free_port, wait_until


def test_records_flow_from_car_through_edge_to_cloud(start_role, trips_file, tmp_path):
    cloud = start_role("cloud-server.1", "CLOUD_NODE", STORE_FILE=tmp_path / "cloud.jsonl")
    edge = start_role("mec-svc-1.1", "EDGE_NODE", REGION="bronx", CLOUD_URL=cloud.url, FORWARD_INTERVAL=1)
    cloud.wait_healthy()
    edge.wait_healthy()
    started = time.monotonic()
    car = start_role(
        "car-workload-1.1", "IOT_NODE",
        TRIPS_FILE=trips_file, RECORDS_PER_SECOND=20, RECORDS_PER_POST=2,
        # The first candidate does not resolve here, like mec-svc-2's name inside a region-1 car.
        EDGE_URLS=f"http://fgt-no-such-edge.invalid:8000/,{edge.url}", CLOUD_URL=cloud.url,
    )

    seen = {"send_latency_ms": [], "e2e_latency_ms": []}

    def enough_batches():
        for role, key in ((car, "send_latency_ms"), (cloud, "e2e_latency_ms")):
            value = (role.metrics() or {}).get(key)
            if value is not None:
                seen[key].append(value)
        stats = cloud.stats() or {}
        return stats.get("batches_received", 0) >= 3 and all(seen.values())

    wait_until(enough_batches, 15, "3 edge batches at the cloud and both latency metrics")
    assert car.stop() == 0
    elapsed = time.monotonic() - started
    wait_until(lambda: (edge.stats() or {}).get("backlog") == 0, 5, "the edge to forward its backlog")

    car_m, edge_m, cloud_m = car.metrics(), edge.stats(), cloud.stats()
    # Every record the car sent went through the edge to the cloud, none lost, none direct.
    assert car_m["records_sent"] > 0
    assert car_m["records_to_edge"] == car_m["records_sent"]
    assert car_m["records_to_cloud"] == car_m["send_errors"] == car_m["records_dropped"] == 0
    assert edge_m["records_received"] == edge_m["records_forwarded"] == car_m["records_sent"]
    assert edge_m["forward_errors"] == edge_m["records_dropped"] == 0
    assert cloud_m["records_received"] == cloud_m["records_from_edges"] == car_m["records_sent"]
    assert cloud_m["batches_received"] == edge_m["batches_forwarded"]
    assert cloud_m["direct_records_received"] == 0
    # The pace is bounded by RECORDS_PER_SECOND.
    assert car_m["records_sent"] <= 20 * elapsed + 2
    # Latencies are plausible: loopback round trips, and e2e within one forward interval (+ slack).
    assert all(0 < v < 500 for v in seen["send_latency_ms"]), seen
    assert all(0 < v < 2000 for v in seen["e2e_latency_ms"]), seen
    assert 0 < edge_m["forward_latency_ms"] < 500

    stored = [json.loads(line) for line in (tmp_path / "cloud.jsonl").read_text().splitlines()]
    assert len(stored) == car_m["records_sent"]
    first = stored[0]
    assert first["car"] == "car-workload-1.1" and first["edge"] == "mec-svc-1.1" and first["region"] == "bronx"
    assert first["sent_at"] <= first["edge_received_at"] <= first["cloud_received_at"]
    assert isinstance(first["trip_distance"], float) and 1 <= first["PULocationID"] <= 263
    print(f"car {car_m}\nedge {edge_m}\ncloud {cloud_m}\nseen {seen}\nelapsed {elapsed:.1f}s")


def test_car_falls_back_to_cloud_while_its_edge_is_unreachable(start_role, trips_file, tmp_path):
    cloud = start_role("cloud-server.1", "CLOUD_NODE", STORE_FILE=tmp_path / "cloud.jsonl")
    cloud.wait_healthy()
    edge_port = free_port()  # nothing listens there yet: connection refused
    car = start_role(
        "car-workload-2.1", "IOT_NODE",
        TRIPS_FILE=trips_file, RECORDS_PER_SECOND=20,
        EDGE_URLS=f"http://127.0.0.1:{edge_port}/", CLOUD_URL=cloud.url, EDGE_RETRY_AFTER=0.5,
    )
    wait_until(lambda: (cloud.stats() or {}).get("direct_records_received", 0) >= 20, 10, "direct records")
    during = car.stats()
    assert during["records_to_cloud"] >= 20 and during["records_to_edge"] == 0
    assert during["send_errors"] >= 1 and during["records_dropped"] == 0

    # The edge comes up: within EDGE_RETRY_AFTER the car is back on it.
    edge = start_role("mec-svc-2.1", "EDGE_NODE", port=edge_port, REGION="brooklyn", CLOUD_URL=cloud.url)
    edge.wait_healthy()
    wait_until(lambda: (car.stats() or {}).get("records_to_edge", 0) >= 10, 10, "the car to use its edge")
    after = car.stats()
    assert after["records_dropped"] == 0
    print(f"during outage {during}\nafter {after}\ncloud {cloud.stats()}")


def test_edge_keeps_a_bounded_backlog_while_the_cloud_is_down(start_role, tmp_path):
    cloud_port = free_port()
    edge = start_role(
        "mec-svc-1.1", "EDGE_NODE", REGION="bronx", CLOUD_URL=f"http://127.0.0.1:{cloud_port}/",
        FORWARD_INTERVAL=0.3, FORWARD_BATCH_MAX=10, BACKLOG_MAX=30,
    )
    edge.wait_healthy()
    for start in range(0, 50, 10):
        records = [{"seq": i, "sent_at": time.time()} for i in range(start, start + 10)]
        response = requests.post(edge.url, json={"source": "car", "sender": "fgt", "records": records}, timeout=2)
        assert response.json() == {"accepted": 10}
    wait_until(lambda: edge.stats()["forward_errors"] >= 2, 5, "failed forwards")
    down = edge.stats()
    assert down["records_received"] == 50
    assert down["backlog"] == 30 and down["records_dropped"] == 20  # the oldest 20 went
    assert down["records_forwarded"] == 0

    cloud = start_role("cloud-server.1", "CLOUD_NODE", port=cloud_port, STORE_FILE=tmp_path / "cloud.jsonl")
    wait_until(lambda: (cloud.stats() or {}).get("records_received") == 30, 5, "the backlog at the cloud")
    wait_until(lambda: edge.stats()["backlog"] == 0, 2, "an empty backlog")
    up = edge.stats()
    assert up["records_forwarded"] == 30 and up["batches_forwarded"] == 3
    stored = [json.loads(line)["seq"] for line in (tmp_path / "cloud.jsonl").read_text().splitlines()]
    assert stored == list(range(20, 50))  # the newest 30, in order
    print(f"cloud down {down}\ncloud up {up}")


def test_bad_input_is_rejected_with_a_json_message(start_role, tmp_path):
    cloud = start_role("cloud-server.1", "CLOUD_NODE", STORE_FILE=tmp_path / "cloud.jsonl")
    cloud.wait_healthy()
    response = requests.post(cloud.url, data="not json", timeout=2)
    assert response.status_code == 400 and "records" in response.json()["message"]
    response = requests.post(cloud.url, json={"records": [1, 2]}, timeout=2)
    assert response.status_code == 400
    assert requests.get(cloud.url + "nope", timeout=2).status_code == 404
    assert cloud.stats()["records_received"] == 0

    result = subprocess.run(
        [sys.executable, str(MAIN)], env={"NODE_TYPE": "TRUCK", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2 and "NODE_TYPE" in result.stdout
