"""The Swarm backend follows Docker's events through its agents: a task's container killed on its node
is down in /status/ (degraded, annotated) within seconds, and Swarm's replacement task gets the instance's
shaping and limits again, measured with ping; also after that node's agent restarted.

A real two-node Swarm of extra dockerds (tests/support/swarm_cluster.py), as test_swarm_backend.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from statistics import median

import pytest

from fogify_net.backends.swarm import SwarmBackend
from tests.integration.conftest import wait_until
from tests.integration.test_swarm_backend import (  # noqa: F401 (fixtures)
    agents,
    clean,
    compose,
    deploy_running,
    image_archive,
    ip_of,
    ping,
    rates,
    report,
    swarm_controller,
    task_pid,
)
from tests.support.swarm_cluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

MODEL = compose("""
    - name: wan
      subnet: 10.98.6.0/24
      uplink: {bandwidth: 20Mbps, latency: {delay: 10ms}}
      downlink: {bandwidth: 8Mbps, latency: {delay: 15ms}}""", """
    - {node: small, service: app, label: edge, replicas: 2, networks: [wan]}""")


def instance(controller, name: str) -> dict:
    return next(i for i in controller.report()["instances"] if i["name"] == name)


def annotations(controller, kind: str) -> list[dict]:
    return [a for a in controller.store.annotations() if a["annotation"] == kind]


def cpu_quota(daemon_name: str, container: str) -> str:
    cpu_dir = next(Path("/sys/fs/cgroup/cpu").glob(f"{daemon_name}/**/{container}"))
    return (cpu_dir / "cpu.cfs_quota_us").read_text().strip()


def kill_and_follow(controller, cluster: Cluster, swarm: SwarmBackend, name: str) -> tuple[float, float]:
    """Kill `name`'s task container on its node with `docker kill`; return the seconds until it is down in
    /status/ and until it is up again (Swarm's replacement adopted and shaped). Checks the reason, the
    deployment's state and the DEGRADED / RECOVERED annotations on the way."""
    container, hostname = swarm._tasks[name]["container"], swarm._tasks[name]["hostname"]
    degraded, recovered = len(annotations(controller, "DEGRADED")), len(annotations(controller, "RECOVERED"))
    killed = time.monotonic()
    next(d for d in cluster.daemons if d.name == hostname).docker("kill", container)
    assert wait_until(lambda: instance(controller, name)["state"] == "down", timeout=20, interval=0.05), \
        instance(controller, name)
    down = time.monotonic() - killed
    assert instance(controller, name)["reason"] == "stopped (exit code 137)"
    assert wait_until(lambda: len(annotations(controller, "DEGRADED")) > degraded, timeout=5)
    assert f"{name} stopped (exit code 137)" in annotations(controller, "DEGRADED")[-1]["params"]
    assert wait_until(lambda: instance(controller, name)["state"] == "up" and controller.status == "running",
                      timeout=60, interval=0.05), (instance(controller, name), controller.message)
    up = time.monotonic() - killed
    assert swarm._tasks[name]["container"] != container
    assert wait_until(lambda: len(annotations(controller, "RECOVERED")) > recovered, timeout=5)
    return down, up


def rtt_ok(rtts: list[float], count: int = 20) -> bool:
    """Every ping answered, within the bounds of the two-node test (50 ms declared)."""
    return len(rtts) == count and min(rtts) >= 49.5 and median(rtts) <= 53


def restart_agent(urls, swarm: SwarmBackend, hostname: str) -> None:
    """The event source breaks: the node's agent stops and starts again (a new run, its events numbered
    anew); returns when the controller's poll has reconnected to the new run."""
    before = swarm._watchers[hostname].epoch
    urls.restart(hostname)
    assert wait_until(lambda: swarm._watchers[hostname].epoch not in (None, before), timeout=20)


def test_a_killed_task_is_down_then_its_replacement_is_shaped(image_archive: Path, clean: None) -> None:  # noqa: F811
    with Cluster(2, image_archive=image_archive) as cluster, agents(cluster.daemons) as urls:
        cluster.init_swarm()
        controller = swarm_controller(cluster, urls)
        try:
            deploy_running(controller, MODEL)
            swarm: SwarmBackend = controller.emulation
            placement = swarm.placement()
            assert sorted(placement.values()) == ["fgts1", "fgts2"], placement
            # What actions changed on edge.2 must come back with its replacement, not the model's values.
            controller.act("vertical_scaling", {"instance_type": "edge.2", "action": "cpu", "value": "0.25"})
            controller.act("network", {"instance_type": "edge.2", "network": "wan",
                                        "downlink": {"bandwidth": "100Mbps"}})
            assert cpu_quota(placement["edge.2"], swarm._tasks["edge.2"]["container"]) == "25000"
            one = task_pid(cluster, swarm, "edge.1")

            for round_ in ("first kill", "kill after the agent of its node restarted"):
                if round_ != "first kill":
                    # The new agent knows nothing of what the last one installed, and the node's delay
                    # helpers ended with it: the controller shapes the node's tasks again ...
                    restarted = time.monotonic()
                    restart_agent(urls, swarm, swarm._tasks["edge.2"]["hostname"])
                    assert wait_until(lambda: rtt_ok(ping(one, ip_of(swarm, "edge.2", "wan"), count=5), 5), timeout=20)
                    report("agent restarted -> its node's tasks shaped again, s", time.monotonic() - restarted)
                    # ... and hears the next death all the same.
                down, up = kill_and_follow(controller, cluster, swarm, "edge.2")
                report(f"{round_}: docker kill -> down in /status/, s", down)
                report(f"{round_}: docker kill -> replacement adopted and shaped (up), s", up)
                assert down < 3.0, down  # Swarm's replacement comes later: its restart delay is 0.5 s

                two = task_pid(cluster, swarm, "edge.2")
                # Each way crosses one uplink (10 ms) and one downlink (15 ms): 50 ms round trip, as before.
                rtts = ping(one, ip_of(swarm, "edge.2", "wan"))
                report(f"{round_}: ping edge.1 -> edge.2 (replaced), 50 ms declared, min/median ms",
                       f"{min(rtts):.2f}/{median(rtts):.2f}")
                assert rtt_ok(rtts), rtts
                back = ping(two, ip_of(swarm, "edge.1", "wan"))
                assert rtt_ok(back), back
                assert rates(two) == {"uplink": "20Mbit", "downlink": "100Mbit"}  # as the action left it
                assert cpu_quota(swarm._tasks["edge.2"]["hostname"], swarm._tasks["edge.2"]["container"]) == "25000"
            assert "edge.2" in swarm.started() and controller.report()["status"] == "running"
        finally:
            controller.close()
        # the event polls end with the undeploy (the agents' /forget/ wakes them)
        assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("swarm-")], timeout=5)
        assert cluster.manager.docker("service", "ls", "--quiet").split() == []
