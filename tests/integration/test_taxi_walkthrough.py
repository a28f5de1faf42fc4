"""The getting-started walkthrough end to end, at a small scale: examples/taxi/run.py against a real API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import real_api

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]
REPO = Path(__file__).parents[2]
TAXI_IMAGE = "taxi-exp:0.0.1"


@pytest.fixture
def api(tmp_path):
    import docker

    try:
        docker.from_env().images.get(TAXI_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"needs {TAXI_IMAGE} (examples/taxi/build-image.sh)")
    with real_api(tmp_path / "data", interval=1.0, host_mhz=None) as (url, _):
        yield url


def metric(url: str, instance: str, name: str) -> list[float]:
    records = requests.get(f"{url}/monitorings/", params={"service": instance}).json()[instance]
    return [r[name] for r in records if name in r]


def test_the_walkthrough_runs_and_shows_each_effect(api, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples/taxi/run.py"), "--url", api, "--out", str(out), "--scale", "0.25"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "The services are deployed" in result.stdout and "services are undeployed" in result.stdout

    for picture in ("cpu_utilisation.png", "network_mec-svc-1.png", "latency_per_car.png"):
        path = out / picture
        assert path.exists() and path.stat().st_size > 20_000, picture  # a drawn plot, not an empty canvas

    # Records flowed car -> edge -> cloud (the metrics outlive the deployment).
    sent = sum(metric(api, car, "records_sent")[-1] for car in ("car-workload-1.1", "car-workload-2.1"))
    at_edge = metric(api, "mec-svc-1.1", "records_received")[-1] + metric(api, "mec-svc-2.1", "records_received")[-1]
    at_cloud = metric(api, "cloud-server.1", "records_received")[-1]
    assert sent > 100 and at_edge > 100 and at_cloud > 100, (sent, at_edge, at_cloud)

    summary = (out / "summary.txt").read_text()
    stress = _rows(summary, "cpu_util of mec-svc-1.1")[0]
    assert stress["annotation"] == "STRESS" and float(stress["mean_during"]) > 50, summary  # the 70% stress

    # The scenario raises mec-svc-1's delay: region 1's cars slow down, region 2's do not. Medians, because
    # the links drop 0.1%: one TCP retransmission (200 ms+) lifts a 5 s mean severalfold, not a median.
    region1 = _ratios(summary, "send_latency_ms of car-workload-1.1")
    region2 = _ratios(summary, "send_latency_ms of car-workload-2.1")
    assert region1[0] > 2 and region1[1] > 1.5 and region1[2] < 0.5, summary  # 5 -> 50 -> 150 -> 5 ms
    assert all(0.67 < ratio < 1.5 for ratio in region2), summary


def _ratios(summary: str, title: str) -> list[float]:
    return [float(row["median_during"]) / float(row["median_before"]) for row in _rows(summary, title)]


def _rows(summary: str, title: str) -> list[dict[str, str]]:
    """The table under `title` in summary.txt, one dict per row keyed by the column names."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    header = lines[start + 1].split()
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith(" ") or not line.strip():
            break
        rows.append(dict(zip(header, line.split())))
    return rows


def test_the_mobility_scenario_moves_cars_and_their_latency_follows_them(api, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples/taxi/mobility.py"), "--url", api, "--out", str(out), "--scale", "0.4"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "mobility_latency.png").stat().st_size > 20_000
    medians = {}
    for line in (out / "mobility_summary.txt").read_text().splitlines()[2:]:
        car, *parts = line.split()
        medians[car] = [float(value) for value in parts[::3]]  # "24.2 (region 1)" -> 24.2
    mover_1, mover_2 = medians["car-workload-1.1"], medians["car-workload-2.1"]
    assert mover_1[1] > 2 * mover_1[0] and mover_1[1] > 2 * mover_1[2], medians  # region 1 -> 2 -> 1
    assert mover_2[0] > 2 * mover_2[1] and mover_2[2] > 2 * mover_2[1], medians  # region 2 -> 1 -> 2
    for car in ("car-workload-1.2", "car-workload-2.2"):  # they stay where they are
        assert max(medians[car]) < 1.5 * min(medians[car]), medians
    moves = [r for r in requests.get(f"{api}/annotations/").json() if r["annotation"] == "MOVE"]
    assert len(moves) == 4, moves
