"""The built image runs all three roles: car -> edge -> cloud inside one container without a network.

Builds taxi-exp:0.0.1 with build-image.sh (seconds when cached); skipped without Docker
or without the base image fogify-net/base:latest.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from taxi_helpers import EXAMPLE

IMAGE = "taxi-exp:0.0.1"

# Runs inside the container: the three roles on loopback, the car on the default
# metrics path and trip file, and the real edge names first (they resolve nowhere here).
CHECK = r"""
import json, os, subprocess, time, urllib.request
def start(node, port, **env):
    env = dict(os.environ, NODE_TYPE=node, LISTEN_HOST="127.0.0.1", PORT=str(port), **env)
    return subprocess.Popen(["python3", "/app/main.py"], env=env, stdout=subprocess.DEVNULL)
def stats(port):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2))
procs = [
    start("CLOUD_NODE", 8001, FOGIFY_METRICS_FILE="/tmp/cloud.metrics", FOGIFY_INSTANCE="cloud-server.1"),
    start("EDGE_NODE", 8002, REGION="bronx", CLOUD_URL="http://127.0.0.1:8001/", FORWARD_INTERVAL="1",
          FOGIFY_METRICS_FILE="/tmp/edge.metrics", FOGIFY_INSTANCE="mec-svc-1.1"),
]
time.sleep(1)
procs.append(start("IOT_NODE", 8000, FOGIFY_INSTANCE="car-workload-1.1", CLOUD_URL="http://127.0.0.1:8001/",
                   EDGE_URLS="http://tasks.mec-svc-1.edge-net-1:8000/,http://127.0.0.1:8002/"))
time.sleep(4)
result = {"car": json.load(open("/fogify/metrics")), "edge": stats(8002), "cloud": stats(8001)}
for p in procs:
    p.terminate()
result["exit_codes"] = [p.wait(timeout=10) for p in procs]
result["trip_rows"] = sum(1 for _ in open("/data/yellow_tripdata_2018-01.csv")) - 1
print(json.dumps(result))
"""


def _docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "image", "inspect", "fogify-net/base:latest"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _docker_ready(), reason="needs Docker and fogify-net/base:latest")
def test_image_runs_car_edge_and_cloud():
    subprocess.run([str(EXAMPLE / "build-image.sh")], check=True, capture_output=True, timeout=300)
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", IMAGE, "python3", "-c", CHECK],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(result)
    assert result["exit_codes"] == [0, 0, 0]
    assert result["trip_rows"] == 20000
    car, edge, cloud = result["car"], result["edge"], result["cloud"]
    assert car["records_to_edge"] > 0 and car["records_to_cloud"] == 0 and car["send_errors"] == 0
    assert edge["batches_forwarded"] >= 2 and edge["forward_errors"] == 0
    assert 0 < cloud["records_from_edges"] <= edge["records_forwarded"] + edge["backlog"]
    assert cloud["direct_records_received"] == 0
