"""The foundation, for real: containers, links, shaping, limits, names, and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fogify_net.host.cgroups import cgroup_dirs
from fogify_net.model import ModelBuilder

from .conftest import BASE_IMAGE, assert_clean, emulation, iperf, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]


def base_builder(memory: str = "128M", clock: float = 1000) -> ModelBuilder:
    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("half", cores=1, clock_speed=clock, memory=memory)  # 1000 MHz of a 2000 MHz host = 0.5 CPU
    return m


def ping(host, address: str, count: int = 3) -> bool:
    """At least one echo reply came back (links in these tests may be lossy)."""
    return "bytes from" in host.cmd(f"ping -c {count} -i 0.2 -W 1 {address}")


def test_ping_works_on_a_shared_network_and_fails_without_one(machine):
    m = base_builder()
    m.network("lan-a", bidirectional={"bandwidth": "100Mbps"})
    m.network("lan-b", bidirectional={"bandwidth": "100Mbps"})
    m.blueprint("a", node="half", service="app", networks=["lan-a"])
    m.blueprint("b", node="half", service="app", networks=["lan-a", "lan-b"])
    m.blueprint("c", node="half", service="app", networks=["lan-b"])
    with emulation(m.build()) as emu:
        a, b, c = (emu.hosts[n] for n in ("a.1", "b.1", "c.1"))
        plan = emu.plan
        assert ping(a, plan.instance("b.1").interface("lan-a").ip)
        assert ping(c, plan.instance("b.1").interface("lan-b").ip)
        assert not ping(a, plan.instance("c.1").interface("lan-b").ip, count=2)
        assert "Network is unreachable" in a.cmd(f"ping -c 1 -W 1 {plan.instance('c.1').interface('lan-b').ip}")


def test_uplink_and_downlink_rates_hold_in_their_directions(machine):
    m = base_builder()
    m.network("lan", bidirectional={"latency": {"delay": "0ms"}})
    asymmetric = {"name": "lan", "uplink": {"bandwidth": "10Mbps"}, "downlink": {"bandwidth": "5Mbps"}}
    m.blueprint("edge", node="half", service="app", networks=[asymmetric])
    m.blueprint("peer", node="half", service="app", networks=["lan"])
    with emulation(m.build()) as emu:
        edge, peer = emu.hosts["edge.1"], emu.hosts["peer.1"]
        edge_ip = emu.plan.instance("edge.1").interface("lan").ip
        peer_ip = emu.plan.instance("peer.1").interface("lan").ip
        up = iperf(edge, peer, peer_ip)  # edge sends: its uplink
        down = iperf(peer, edge, edge_ip)  # edge receives: its downlink
        assert up == pytest.approx(10, rel=0.10), f"uplink {up:.2f} Mbit/s"
        assert down == pytest.approx(5, rel=0.10), f"downlink {down:.2f} Mbit/s"


def test_a_link_override_changes_the_rate_for_that_pair_only(machine):
    m = base_builder()
    m.network("lan", bidirectional={"bandwidth": "20Mbps"})
    m.blueprint("a", node="half", service="app", networks=["lan"])
    m.blueprint("b", node="half", service="app", networks=["lan"])
    m.blueprint("c", node="half", service="app", networks=["lan"])
    m.link("lan", "a", "b", bidirectional=True, properties={"bandwidth": "4Mbps"})
    with emulation(m.build()) as emu:
        a, b, c = (emu.hosts[n] for n in ("a.1", "b.1", "c.1"))
        ip = {n: emu.plan.instance(f"{n}.1").interface("lan").ip for n in "abc"}
        to_b = iperf(a, b, ip["b"], seconds=4)
        to_c = iperf(a, c, ip["c"], seconds=4)
        assert to_b == pytest.approx(4, rel=0.10), f"a->b {to_b:.2f} Mbit/s"
        assert to_c == pytest.approx(20, rel=0.10), f"a->c {to_c:.2f} Mbit/s"


def _cpu_seconds(pid: int) -> float:
    dirs = cgroup_dirs(pid)
    return int((dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9


def test_cpu_and_memory_limits_hold(machine):
    m = base_builder(memory="64M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps"})
    m.blueprint("box", node="half", service="app", networks=["lan"])
    m.blueprint("peer", node="half", service="app", networks=["lan"])
    with emulation(m.build(), host_mhz=2000) as emu:
        box = emu.hosts["box.1"]
        box.dexec(["python3", "-c", "import time\nend=time.time()+8\nwhile time.time()<end: pass"], detach=True)
        box.dexec(["python3", "-c", "import time\nend=time.time()+8\nwhile time.time()<end: pass"], detach=True)
        time.sleep(1)
        first, t0 = _cpu_seconds(box.cpid), time.monotonic()
        time.sleep(4)
        used = (_cpu_seconds(box.cpid) - first) / (time.monotonic() - t0)
        assert used == pytest.approx(0.5, abs=0.1), f"{used:.3f} CPUs"
        code, _ = box.dexec(["python3", "-c", "x = bytearray(200 * 2**20)"])
        assert code == 137  # killed by the memory cgroup
        assert box.container.status == "running" or (box.container.reload() or box.container.status == "running")
        assert ping(box, emu.plan.instance("peer.1").interface("lan").ip)


def test_names_resolve_inside_the_containers(machine):
    m = base_builder()
    m.service("web", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.network("edge-net-1", bidirectional={"bandwidth": "100Mbps"})
    m.network("internet", bidirectional={"bandwidth": "10Mbps"})
    m.network("edge-net-2", bidirectional={"bandwidth": "100Mbps"})
    m.blueprint("mec-svc-1", node="half", service="web", networks=["edge-net-1", "internet"])
    m.blueprint("car", node="half", service="app", networks=["edge-net-1", "internet"], replicas=2)
    m.blueprint("mec-svc-2", node="half", service="web", networks=["edge-net-2"])
    with emulation(m.build()) as emu:
        car = emu.hosts["car.1"]
        mec = emu.plan.instance("mec-svc-1.1")
        expect = {
            "mec-svc-1": mec.interface("edge-net-1").ip,
            "mec-svc-1.1": mec.interface("edge-net-1").ip,
            "tasks.mec-svc-1": mec.interface("edge-net-1").ip,
            "tasks.mec-svc-1.edge-net-1": mec.interface("edge-net-1").ip,
            "tasks.mec-svc-1.internet": mec.interface("internet").ip,
            "web": mec.interface("edge-net-1").ip,
        }
        for name, address in expect.items():
            code, out = car.dexec(["getent", "hosts", name])
            assert code == 0 and out.split()[0] == str(address), f"{name}: {out!r}"
        code, out = car.dexec(["getent", "ahostsv4", "tasks.car"])
        assert {line.split()[0] for line in out.splitlines()} == {
            str(i.interface("edge-net-1").ip) for i in emu.plan.instances_of("car")}
        assert car.dexec(["getent", "hosts", "tasks.mec-svc-2.edge-net-2"])[0] != 0  # no shared network
        code, out = car.dexec(["sh", "-c", "ping -c 1 -W 2 tasks.mec-svc-1.edge-net-1 && echo reached"])
        assert "reached" in out
        assert car.dexec(["sh", "-c", "echo $FOGIFY_NAME $FOGIFY_SERVICE_NAME $FOGIFY_INSTANCE"])[1].split() == [
            "car", "app", "car.1"]


def test_undeploy_leaves_nothing_behind(machine):
    before = snapshot()
    m = base_builder()
    m.network("lan", bidirectional={"bandwidth": "10Mbps", "latency": {"delay": "10ms"}, "drop": "1%"})
    m.blueprint("a", node="half", service="app", networks=["lan"], replicas=2)
    with emulation(m.build()) as emu:
        assert len(snapshot()["containers"]) == len(before["containers"]) + 2
        assert ping(emu.hosts["a.1"], emu.plan.instance("a.2").interface("lan").ip)
    assert_clean(before)


def test_a_failed_deploy_rolls_back_everything(machine):
    from fogify_net.backends import DeployError

    before = snapshot()
    m = base_builder()
    m.service("broken", image=BASE_IMAGE, command=["/no/such/program"])
    m.network("lan", bidirectional={"bandwidth": "10Mbps", "latency": {"delay": "5ms"}})
    m.blueprint("a", node="half", service="app", networks=["lan"], replicas=3)
    m.blueprint("b", node="half", service="broken", networks=["lan"])
    with pytest.raises(DeployError, match="no/such/program"), emulation(m.build()):
        pass
    assert_clean(before)


def test_a_name_held_by_someone_elses_container_fails_the_deploy_and_that_container_stays(machine):
    from fogify_net.errors import Conflict

    m = base_builder()
    m.network("lan", bidirectional={"latency": {"delay": "5ms"}})
    m.blueprint("a", node="half", service="app", networks=["lan"], replicas=2)
    m.blueprint("fgt-taken", node="half", service="app", networks=["lan"])
    theirs = "fogify_fgt-taken.1"  # not ours: no fogify-net label, as a real Fogify stack's task would be
    subprocess.run(["docker", "run", "-d", "--name", theirs, BASE_IMAGE, "sleep", "300"], check=True,
                   capture_output=True)
    try:
        before = snapshot()
        with pytest.raises(Conflict, match=f"name {theirs} is taken by a container fogify-net did not start"), \
                emulation(m.build()):
            pass
        assert_clean(before)  # our replicas went (the snapshot sees only labelled containers)
        running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", theirs],
                                 capture_output=True, text=True)
        assert running.stdout.strip() == "true", running.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", theirs], capture_output=True)


DEPLOY_AND_HANG = """
import sys, time
sys.path[:0] = {path!r}
from tests.integration.conftest import base_model
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.backends.local import LocalBackend
emu = LocalBackend(compile_model(base_model(), HostFacts(2000, 2, 2**34)), run_dir="/run/fogify-net")
emu.deploy()
print("up", flush=True)
time.sleep(600)
"""


def test_cleanup_removes_what_a_crashed_process_left(machine):
    from fogify_net.host.cleanup import cleanup

    before = snapshot()
    root = str(Path(__file__).parents[2])
    child = subprocess.Popen([sys.executable, "-c", DEPLOY_AND_HANG.format(path=[root])], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "up"
        assert len(snapshot()["containers"]) > len(before["containers"])
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    removed = cleanup("/run/fogify-net")
    assert any(line.startswith("container ") for line in removed)
    assert_clean(before)


def test_named_volumes_are_shared_outlive_undeploy_and_go_with_cleanup(machine):
    import docker

    from fogify_net.host.cleanup import cleanup

    client = docker.from_env()
    users = client.volumes.create("fgt-users-volume")  # the user's own: never labelled, never removed
    try:
        m = ModelBuilder()
        m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"],
                  volumes=["fgt-data:/data", "fgt-users-volume:/mine:ro"])
        m.node("half", cores=1, clock_speed=1000, memory="128M")
        m.network("lan", bidirectional={"bandwidth": "10Mbps"})
        m.blueprint("a", node="half", service="app", networks=["lan"], replicas=2)
        with emulation(m.build()) as emu:
            first, second = (emu.hosts[n].container for n in ("a.1", "a.2"))
            assert first.exec_run(["sh", "-c", "echo kept > /data/note"]).exit_code == 0
            assert second.exec_run(["cat", "/data/note"]).output.decode().strip() == "kept"
        volume = client.volumes.get("fgt-data")
        assert volume.attrs["Labels"] == {"fogify-net": "volume"}
        assert not client.volumes.get("fgt-users-volume").attrs["Labels"]
        assert "volume fgt-data" in cleanup("/run/fogify-net")
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("fgt-data")
        client.volumes.get("fgt-users-volume")
    finally:
        users.remove(force=True)
        for leftover in client.volumes.list(filters={"name": "fgt-data"}):
            leftover.remove(force=True)


def test_tmpfs_and_no_new_privileges_reach_the_container(machine):
    m = base_builder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"],
              tmpfs=["/fgt-scratch:size=8m,mode=750"], security_opt=["no-new-privileges:true"])
    m.network("lan")
    m.blueprint("a", node="half", service="app", networks=["lan"])
    with emulation(m.build()) as emu:
        container = emu.hosts["a.1"].container
        mount = container.exec_run(["sh", "-c", "grep ' /fgt-scratch ' /proc/mounts"]).output.decode()
        assert mount.startswith("tmpfs /fgt-scratch tmpfs") and "size=8192k" in mount and "mode=750" in mount, mount
        status = container.exec_run(["grep", "NoNewPrivs", "/proc/1/status"]).output.decode()
        assert status.split() == ["NoNewPrivs:", "1"], status
