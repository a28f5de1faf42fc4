"""The local backend follows Docker: an OOM-killed or killed container shows as down (degraded, with why),
and one started again gets its links and shaping back."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.integration.conftest import BASE_IMAGE, emulation, wait_until

pytestmark = pytest.mark.slow

HUNGRY = "while [ ! -e /tmp/eat ]; do sleep 0.2; done; rm /tmp/eat; exec tail /dev/zero"  # eats memory when told


def model():
    from fogify_net.model import ModelBuilder

    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sh", "-c", HUNGRY])
    m.node("small", cores=1, clock_speed=1000, memory="64M")
    m.network("lan", bidirectional={"latency": {"delay": "15ms"}})
    m.blueprint("a", node="small", service="app", networks=["lan"], replicas=2)
    return m.build()


def rtt_ms(emu, source: str, target: str) -> float | None:
    address = emu.plan.instance(target).interface("lan").ip
    out = emu.hosts[source].cmd(f"ping -c 3 -i 0.2 -W 2 {address}")
    times = [float(t) for t in re.findall(r"time=([\d.]+)", out)]
    return min(times) if times else None


def test_an_oom_killed_instance_is_down_and_comes_back_shaped(machine):
    with emulation(model()) as emu:
        container = emu.plan.instance("a.2").container
        assert rtt_ms(emu, "a.1", "a.2") >= 29  # 15 ms each way
        subprocess.run(["docker", "exec", container, "touch", "/tmp/eat"], check=True)
        assert wait_until(lambda: "a.2" in emu.lost, timeout=30), emu.lost
        assert emu.lost["a.2"] == "was OOM-killed"
        assert emu.state == "degraded" and "a.2 was OOM-killed" in emu.detail
        assert "a.2" not in emu.started() and "a.2" not in emu.pids()
        task = emu.task_facts()["a.2"]  # what GET /topology/ lists: a dead task, as Swarm lists one
        assert (task.state, task.pid) == ("failed", 0)

        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        assert wait_until(lambda: "a.2" not in emu.lost and emu.state == "running", timeout=30), emu.detail
        assert wait_until(lambda: (rtt_ms(emu, "a.1", "a.2") or 0) >= 29, timeout=10)  # linked and shaped again
        task = emu.task_facts()["a.2"]
        assert task.state == "running" and task.pid == emu.pids()["a.2"] > 0

        subprocess.run(["docker", "kill", container], check=True, capture_output=True)
        assert wait_until(lambda: emu.lost.get("a.2", "").startswith("stopped (exit code"), timeout=30)
