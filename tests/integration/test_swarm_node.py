"""A whole Swarm node dies (its agent killed with SIGKILL, its dockerd stopped): its instances are down in
/status/ naming the node within the documented bound, listed as failed tasks, actions on them answer 409
naming the node; Swarm's replacements on the surviving node are shaped (RTT measured) and up. When the node
comes back, its new agent has removed what the killed one left, and a task placed there is shaped once.

A real two-node Swarm of extra dockerds (tests/support/swarm_cluster.py), as test_swarm_events.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from statistics import median

import pytest

from fogify_net.backends.swarm import SwarmBackend
from fogify_net.backends.swarm.events import NODE_TIMEOUT_S
from tests.integration.conftest import wait_until
from tests.integration.test_swarm_backend import (  # noqa: F401 (fixtures)
    agents,
    clean,
    deploy_running,
    image_archive,
    ip_of,
    ping,
    report,
    swarm_controller,
    task_pid,
)
from tests.integration.test_swarm_events import MODEL, annotations, instance, rtt_ok
from tests.support.swarm_cluster import Cluster, Daemon

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

SINCE = re.compile(r"node fgts2 does not answer since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def helpers(daemon: Daemon) -> dict[str, int]:
    """The node agent's delay helpers that run: pid file name -> pid."""
    found = {}
    for pid_file in (daemon.run_dir / "agent").glob("fogify-delayd-*.pid"):
        pid = int(pid_file.read_text().split()[0])
        if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == "fogify-delayd":
            found[pid_file.name] = pid
    return found


def running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()
            and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]


def jumps(daemon: Daemon) -> list[str]:
    """Every rule that leads into our delay chains, in every overlay namespace of the node."""
    found = []
    for netns in (daemon.exec_root / "netns").iterdir():
        saved = subprocess.run(["nsenter", f"--net={netns}", "--", "iptables-save", "-t", "mangle"],
                               capture_output=True, text=True).stdout
        found += [f"{netns.name}: {line}" for line in saved.splitlines()
                  if line.startswith("-A") and line.split()[-1] in ("FOGIFY_NET_UP", "FOGIFY_NET_DOWN")
                  and not line.startswith(("-A FOGIFY_NET_UP", "-A FOGIFY_NET_DOWN"))]
    return found


def test_a_dead_node_is_down_replaced_and_used_again(image_archive: Path, clean: None) -> None:  # noqa: F811
    from api.app import create_app

    began = time.monotonic()
    with Cluster(2, image_archive=image_archive) as cluster, agents(cluster.daemons) as urls:
        cluster.init_swarm()
        controller = swarm_controller(cluster, urls)
        try:
            deploy_running(controller, MODEL)
            report("phase: deployed, s since the start", time.monotonic() - began)
            swarm: SwarmBackend = controller.emulation
            placement = swarm.placement()
            dead = next(name for name, node in placement.items() if node == "fgts2")
            alive = next(name for name, node in placement.items() if node == "fgts1")
            node = cluster.daemons[1]
            old_helpers = helpers(node)
            assert list(old_helpers) and jumps(node), "the node delays nothing: the test would prove nothing"
            old_container = swarm._tasks[dead]["container"]
            api = create_app(controller).test_client()

            # The node dies: its agent is killed (no cleanup of its own) and its dockerd stops its containers.
            recovered = len(annotations(controller, "RECOVERED"))
            killed = time.monotonic()
            urls.kill(node.name)
            node.stop()
            assert wait_until(lambda: instance(controller, dead)["state"] == "down", timeout=3 * NODE_TIMEOUT_S,
                              interval=0.05), instance(controller, dead)
            down = report("node killed -> its instance down in /status/, s", time.monotonic() - killed)
            assert NODE_TIMEOUT_S - 1 <= down <= NODE_TIMEOUT_S + 3, down  # the documented bound
            reason = instance(controller, dead)["reason"]
            assert SINCE.fullmatch(reason), reason
            assert wait_until(lambda: any(f"{dead} {reason}" in a["params"]
                                          for a in annotations(controller, "DEGRADED")), timeout=5)
            if swarm._tasks[dead]["container"] == old_container:  # Swarm may have replaced it meanwhile
                tasks = api.get("/topology/").get_json()
                mine = [t for t in tasks["fogify_edge"]
                        if t["Status"]["ContainerStatus"]["ContainerID"] == old_container]
                assert [(t["Status"]["State"], t["Status"]["ContainerStatus"]["PID"]) for t in mine] == [("failed", 0)]
                answer = api.post("/actions/command/", json={"params": {"instance_type": dead,
                                                                        "action": {"command": "true"}}})
                assert answer.status_code == 409 and "node fgts2 does not answer" in answer.get_json()["message"], \
                    answer.get_json()
            # the killed agent's helpers ended with it (their stdin closed); the new agent removes the rest
            report("the killed agent's delay helpers still running", len(running(list(old_helpers.values()))))

            # Swarm finds the node down by its heartbeat and starts a replacement on fgts1: shaped as planned.
            assert wait_until(lambda: instance(controller, dead)["state"] == "up" and controller.status == "running",
                              timeout=90, interval=0.1), (instance(controller, dead), controller.message)
            report("node killed -> Swarm's replacement adopted and shaped (up), s", time.monotonic() - killed)
            assert swarm._tasks[dead]["hostname"] == "fgts1"
            assert wait_until(lambda: len(annotations(controller, "RECOVERED")) > recovered, timeout=5)
            rtts = ping(task_pid(cluster, swarm, alive), ip_of(swarm, dead, "wan"))
            report("ping to the replacement, 50 ms declared, min/median ms", f"{min(rtts):.2f}/{median(rtts):.2f}")
            assert rtt_ok(rtts), rtts

            report("phase: replaced, s since the start", time.monotonic() - began)
            # The node comes back: its dockerd, then a new agent, which finds what the killed one left.
            node.start()
            node.wait_ready()
            stale = [name for name in old_helpers if (node.run_dir / "agent" / name).exists()]
            assert stale, "the killed agent left no pid file: nothing to remove"
            urls.start(node.name)
            assert wait_until(lambda: "fgts2" not in swarm.agents.silent, timeout=30)
            assert running(list(old_helpers.values())) == []
            assert not any((node.run_dir / "agent" / name).exists() for name in stale), stale
            assert wait_until(lambda: cluster.nodes()["fgts2"]["Status"] == "Ready", timeout=60)

            # A task placed there now is shaped once: one helper, one jump per hook in the network's namespace.
            answer = api.post("/actions/horizontal_scaling/", json={"params": {"instance_type": "edge",
                                                                               "instances": 1, "type": "up"}})
            assert answer.status_code == 200, answer.get_json()
            new = next(name for name, host in swarm.placement().items() if host == "fgts2")
            rtts = ping(task_pid(cluster, swarm, alive), ip_of(swarm, new, "wan"))
            report("ping to a task placed on the node that came back, min/median ms",
                   f"{min(rtts):.2f}/{median(rtts):.2f}")
            assert rtt_ok(rtts), rtts
            assert len(helpers(node)) == 1, helpers(node)
            assert len(jumps(node)) == 2, jumps(node)  # PREROUTING and POSTROUTING, once each
            assert controller.report()["status"] == "running" and swarm.lost == {}
            report("phase: node used again, s since the start", time.monotonic() - began)

            # Its agent alone is killed and started again (the node's tasks and namespaces stay): the new one
            # removes the rules the killed one left before it shapes, so nothing comes twice.
            epoch = swarm._watchers["fgts2"].epoch
            urls.kill(node.name)
            urls.start(node.name)
            assert wait_until(lambda: swarm._watchers["fgts2"].epoch not in (None, epoch), timeout=20)
            assert wait_until(lambda: len(helpers(node)) == 1 and rtt_ok(ping(task_pid(cluster, swarm, alive),
                                                                               ip_of(swarm, new, "wan"), 5), 5),
                              timeout=20), helpers(node)
            assert len(jumps(node)) == 2, jumps(node)
            assert swarm.lost == {}  # (back within NODE_TIMEOUT_S: never silent)
            report("phase: agent killed and started again, s since the start", time.monotonic() - began)

            # Its agent hangs (SIGSTOP: connections are accepted, nothing answers, as from a machine cut off):
            # down after the node timeout, found by the poll's read timeout; when it answers again, its task
            # still runs and is up again, without a replacement.
            container = swarm._tasks[new]["container"]
            os.kill(urls.pids[node.name], signal.SIGSTOP)
            try:
                frozen = time.monotonic()
                assert wait_until(lambda: instance(controller, new)["state"] == "down", timeout=3 * NODE_TIMEOUT_S,
                                  interval=0.05), instance(controller, new)
                down = report("agent stopped (SIGSTOP) -> down in /status/, s", time.monotonic() - frozen)
                assert down <= NODE_TIMEOUT_S + 1, down
                assert SINCE.fullmatch(instance(controller, new)["reason"]), instance(controller, new)
                answer = api.post("/actions/command/", json={"params": {"instance_type": new,
                                                                        "action": {"command": "true"}}})
                assert answer.status_code == 409 and "node fgts2 does not answer" in answer.get_json()["message"]
            finally:
                os.kill(urls.pids[node.name], signal.SIGCONT)
            assert wait_until(lambda: instance(controller, new)["state"] == "up" and controller.status == "running",
                              timeout=30, interval=0.05), (instance(controller, new), controller.message)
            assert swarm._tasks[new]["container"] == container
            assert rtt_ok(ping(task_pid(cluster, swarm, alive), ip_of(swarm, new, "wan")))
            report("phase: agent hung and answered again, s since the start", time.monotonic() - began)

            # Its dockerd restarts under the living agent: the task's container stops, Swarm starts it again
            # (a new task), and it is shaped again: in the network's new namespace if it is on this node.
            container = swarm._tasks[new]["container"]
            restarted = time.monotonic()
            node.stop()
            node.start()
            node.wait_ready()
            assert wait_until(lambda: swarm._tasks[new]["container"] != container
                              and instance(controller, new)["state"] == "up" and controller.status == "running",
                              timeout=90, interval=0.1), (instance(controller, new), controller.message)
            report("dockerd restarted -> its task replaced and shaped (up), s", time.monotonic() - restarted)
            report("the task after the dockerd restart runs on", swarm._tasks[new]["hostname"])
            rtts = ping(task_pid(cluster, swarm, alive), ip_of(swarm, new, "wan"))
            report("ping to it after the dockerd restart, min/median ms", f"{min(rtts):.2f}/{median(rtts):.2f}")
            assert rtt_ok(rtts), rtts
            if swarm._tasks[new]["hostname"] == "fgts2":
                assert len(helpers(node)) == 1 and len(jumps(node)) == 2, (helpers(node), jumps(node))
            report("phase: dockerd restarted, s since the start", time.monotonic() - began)
        finally:
            controller.close()
        assert cluster.manager.docker("service", "ls", "--quiet").split() == []
        report("phase: undeployed, s since the start", time.monotonic() - began)
    report("phase: cluster removed, s since the start", time.monotonic() - began)
