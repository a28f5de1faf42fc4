"""A controller on the in-memory backend (tests/support/fakebackend.py), for API tests without root."""

from __future__ import annotations

import time
from pathlib import Path

from fogify_net import backends
from fogify_net.controller import Controller
from fogify_net.host.capabilities import Capabilities

SEED = Path(__file__).parents[1] / "fixtures" / "seed-taxi.yaml"
NOTHING = Capabilities(root=False, docker=False, mininet=False, htb=False, netem=False, nft_bridge=False,
                       nfqueue=False, physdev=False, br_netfilter=False, ovs_kernel=False, delayd=None, cgroup="v1")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def fake_controller(data_dir: Path, monkeypatch) -> Controller:
    """A controller whose backend is the in-memory one; sampling effectively off (interval of an hour)."""
    monkeypatch.setitem(backends.REGISTRY, "fake", "tests.support.fakebackend:FakeBackend")
    return Controller(data_dir=data_dir, run_dir=str(data_dir / "run"), capabilities=NOTHING, host_mhz=2000.0,
                      backend="fake", interval=3600, allow_host_access=True)
