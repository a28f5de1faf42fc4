"""The API killed with SIGKILL at a random point of deploy, scale-out, a scenario and undeploy.

Each time a new API starts on the same data directory, reports what the
killed one left (its deployment record, beside the metrics), removes it, and
the next deploy (of the same model, sent again without a file) succeeds;
afterwards nothing of ours is left. The random points come from a seeded
generator, so a failure names a point that can be replayed.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time

import pytest
import requests
import yaml

from .conftest import BASE_IMAGE, assert_clean, snapshot, wait_until
from .published_sdk import ApiProcess

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

SEED = 15
MODEL = {
    "services": {"app": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
    "x-fogify": {
        "nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "128M"}}],
        "networks": [{"name": "lan", "bidirectional": {"bandwidth": "50Mbps", "latency": {"delay": "5ms"},
                                                       "drop": "0.1%"}}],
        "topology": [{"node": "n", "service": "app", "label": "a", "replicas": 2, "networks": ["lan"]},
                     {"node": "n", "service": "app", "label": "b", "replicas": 1, "networks": ["lan"]}],
        "scenarios": [{"name": "busy", "actions": [
            {"time": 0.3, "position": i, "instance_type": "a", "action": {"type": "network", "parameters": {
                "network": "lan", "bidirectional": {"latency": {"delay": f"{5 + i}ms"}}}}}
            for i in range(10)]}],
    },
}


def deploy(url: str, model: dict | None = MODEL, timeout: float = 90) -> None:
    files = {"file": ("m.yaml", yaml.safe_dump(model))} if model is not None else None
    r = requests.post(f"{url}/topology/", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert wait_until(lambda: requests.get(f"{url}/status/").json()["status"] != "deploying", timeout=timeout,
                      interval=0.2)
    status = requests.get(f"{url}/status/").json()
    assert status["status"] == "running", status


def in_background(fn) -> threading.Thread:
    def quietly():
        with contextlib.suppress(requests.RequestException):  # the API dies under it, as intended
            fn()

    thread = threading.Thread(target=quietly, daemon=True)
    thread.start()
    return thread


def kill_during(phase: str, api: ApiProcess, rng: random.Random) -> float:
    """Start `phase` and SIGKILL the API at a random moment of it; returns that moment (s after the start)."""
    url = api.url
    if phase != "deploy":
        deploy(url)
    starts = {
        "deploy": lambda: requests.post(f"{url}/topology/", files={"file": ("m.yaml", yaml.safe_dump(MODEL))}),
        "scale-out": lambda: requests.post(f"{url}/actions/horizontal_scaling/", json={
            "params": {"instance_type": "a", "instances": 3, "type": "up"}}, timeout=60),
        "scenario": lambda: requests.post(f"{url}/scenarios/busy/", timeout=10),
        "undeploy": lambda: requests.delete(f"{url}/topology/", timeout=10),
    }
    windows = {"deploy": (0.0, 4.0), "scale-out": (0.0, 2.0), "scenario": (0.2, 3.0), "undeploy": (0.0, 2.0)}
    moment = rng.uniform(*windows[phase])
    in_background(starts[phase])
    time.sleep(moment)
    api.stop(signal.SIGKILL)
    return moment


@pytest.mark.parametrize("phase", ["deploy", "scale-out", "scenario", "undeploy"])
def test_a_new_api_removes_what_a_killed_one_left_and_deploys_again(phase, tmp_path):
    before = snapshot()
    rng = random.Random(f"{SEED}-{phase}")
    killed = ApiProcess(tmp_path).start()
    moment = kill_during(phase, killed, rng)
    point = f"{phase}, killed {moment:.2f}s in (seed {SEED})"

    api = ApiProcess(tmp_path).start()
    try:
        status = requests.get(f"{api.url}/status/").json()
        assert status["status"] == "idle", (point, status)
        if "stopped without undeploying" in status["message"]:
            assert "removed" in status["message"] and "POST /topology/ without a file" in status["message"], point
            annotations = [a["annotation"] for a in requests.get(f"{api.url}/annotations/").json()]
            assert "CLEANUP" in annotations, point
            deploy(api.url, model=None)  # the killed API's model, kept in its record
        else:  # killed before the record was written, or after the undeploy finished: nothing to find
            deploy(api.url)
        names = sorted(i["name"] for i in requests.get(f"{api.url}/status/").json()["instances"])
        assert names == ["a.1", "a.2", "b.1"], point
        assert requests.delete(f"{api.url}/topology/").status_code == 200
        assert wait_until(lambda: requests.get(f"{api.url}/status/").json()["status"] == "idle", timeout=60), point
    finally:
        assert api.stop() == 0, api.log()
    assert_clean(before)
