"""The sampler on real containers: CPU, memory, disk, network and app metrics as a user would check them.

Three containers of `fogify-net/base:latest`, each limited to 0.5 CPU and
128 MiB and without Docker networking, as fogify-net runs them. Each gets a
veth pair into a test bridge, the switch side in the root namespace (that is
the port the sampler reads), the other end `eth0` in the container:

    fgt-mon-a (10.96.77.1) --- fgtmA0 ---+
    fgt-mon-b (10.96.77.2) --- fgtmB0 ---+-- fgtmbr0
    fgt-mon-c (10.96.77.3) --- fgtmC0 ---+   (c is removed by one test)

Everything is named fgt-mon-* / fgtm* (containers also carry the label fgt=1)
and removed by the fixture, even when a test fails; the FORWARD rule carries
the comment fgtm-test so that only ours is removed.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fogify_net.host.counters import CounterReader, SampleTarget
from fogify_net.monitoring.sampler import Sampler
from fogify_net.monitoring.store import MetricStore

IMAGE = "fogify-net/base:latest"
BRIDGE = "fgtmbr0"
NETWORK = "fgt-net"
SUBNET = "10.96.77"
HOSTS = ("a", "b", "c")
FORWARD_RULE = ["FORWARD", "-i", "fgt+", "-o", "fgt+", "-m", "comment", "--comment", "fgtm-test", "-j", "ACCEPT"]
MIB = 2**20


def _docker_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root: veth pairs in container namespaces, iptables, cgroup files"
    if shutil.which("ip") is None or shutil.which("iptables") is None:
        return "needs ip and iptables"
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        client.images.get(IMAGE)
    except Exception as error:  # noqa: BLE001 - no SDK, no daemon, no image: say which
        return f"needs a working Docker with {IMAGE}: {error}"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_docker_problem() is not None, reason=f"{_docker_problem()}")]


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60)


@dataclass
class Lab:
    client: object
    containers: dict[str, object] = field(default_factory=dict)
    targets: dict[str, SampleTarget] = field(default_factory=dict)

    def address(self, host: str) -> str:
        return f"{SUBNET}.{HOSTS.index(host) + 1}"

    def exec(self, host: str, *cmd: str) -> tuple[int, str]:
        code, output = self.containers[host].exec_run(list(cmd))
        return code, output.decode(errors="replace")

    def running(self) -> list[SampleTarget]:
        return [self.targets[h] for h in HOSTS if h in self.targets]

    def source(self):
        """What a backend's samples() is: a counter reader over the running targets."""
        reader = CounterReader()
        return lambda: reader.read(self.running())


def port(host: str) -> str:
    return f"fgtm{host.upper()}0"


def teardown(client) -> None:
    ours = {f"fgt-mon-{host}" for host in HOSTS}
    for container in client.containers.list(all=True, filters={"label": "fgt=1"}):
        if container.name in ours:
            container.remove(force=True)
    for host in HOSTS:
        sh("ip", "link", "del", port(host), check=False)
    sh("ip", "link", "del", BRIDGE, check=False)
    while sh("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
        pass


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    import docker

    client = docker.from_env(timeout=60)
    teardown(client)  # leftovers of an interrupted run
    try:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "link", "set", BRIDGE, "up")
        sh("iptables", "-I", *FORWARD_RULE[:1], "1", *FORWARD_RULE[1:])  # Docker's FORWARD policy is DROP
        lab = Lab(client)
        for host in HOSTS:
            container = client.containers.run(
                IMAGE, ["sleep", "infinity"], name=f"fgt-mon-{host}", labels={"fgt": "1"}, detach=True,
                network_mode="none", cpu_quota=50000, cpu_period=100000, mem_limit="128m")
            container.reload()
            pid = container.attrs["State"]["Pid"]
            sh("ip", "link", "add", port(host), "type", "veth", "peer", "name", "eth0", "netns", str(pid))
            sh("ip", "link", "set", port(host), "master", BRIDGE, "up")
            sh("nsenter", "-t", str(pid), "-n", "ip", "addr", "add", f"{lab.address(host)}/24", "dev", "eth0")
            sh("nsenter", "-t", str(pid), "-n", "ip", "link", "set", "eth0", "up")
            lab.containers[host] = container
            lab.targets[host] = SampleTarget(
                name=f"mon.{HOSTS.index(host) + 1}", container_id=container.id, pid=pid, cpus=0.5,
                memory_limit=128 * MIB, ports={NETWORK: port(host)},
                upper_dir=container.attrs["GraphDriver"]["Data"].get("UpperDir"))
        yield lab
    finally:
        teardown(client)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricStore]:
    s = MetricStore(tmp_path / "metrics.db")
    yield s
    s.close()


@pytest.fixture
def sampler(lab: Lab, store: MetricStore) -> Iterator[Sampler]:
    s = Sampler(lab.source(), store, interval=1.0)
    yield s
    s.stop()


def name(lab: Lab, host: str) -> str:
    return f"mon.{HOSTS.index(host) + 1}"


# --- the user's checks -----------------------------------------------------------------------------


def test_a_busy_instance_uses_its_whole_allocation_and_an_idle_one_nothing(lab: Lab, sampler: Sampler) -> None:
    lab.exec("a", "sh", "-c", "timeout 20 python3 -c 'while True: pass' >/dev/null 2>&1 & echo $! > /tmp/busy.pid")
    try:
        time.sleep(1.0)  # let the loop start
        sampler.sample_once()
        rounds = []
        for _ in range(3):
            time.sleep(1.0)
            rounds.append(sampler.sample_once())
    finally:
        lab.exec("a", "sh", "-c", "kill $(cat /tmp/busy.pid)")
    busy = [r[name(lab, "a")]["cpu_util"] for r in rounds]
    idle = [r[name(lab, "b")]["cpu_util"] for r in rounds]
    # 0.5 CPU allowed and one spinning thread: 100 % of the allocation.
    assert all(85 <= u <= 115 for u in busy), busy
    assert all(u < 10 for u in idle), idle


def test_memory_grows_when_a_process_allocates(lab: Lab, sampler: Sampler) -> None:
    before = sampler.sample_once()[name(lab, "b")]
    lab.containers["b"].exec_run(["python3", "-c", "x=bytearray(50*2**20); import time; time.sleep(5)"], detach=True)
    time.sleep(2.0)
    after = sampler.sample_once()[name(lab, "b")]
    assert after["memory"] - before["memory"] >= 45 * MIB
    assert after["memory_util"] == pytest.approx(100 * after["memory"] / (128 * MIB))
    assert after["memory_util"] > before["memory_util"] + 30


def test_network_counters_grow_by_at_least_the_bytes_sent(lab: Lab, sampler: Sampler) -> None:
    before = sampler.sample_once()
    code, output = lab.exec("a", "ping", "-s", "1000", "-c", "50", "-i", "0.01", "-q", lab.address("b"))
    assert code == 0, output
    time.sleep(0.2)
    after = sampler.sample_once()

    def grew(host: str, direction: str) -> float:
        key = f"network_{direction}_{NETWORK}"
        return after[name(lab, host)][key] - before[name(lab, host)][key]

    icmp_bytes = 50 * (1000 + 8 + 20)  # payload + ICMP + IPv4 headers, per echo
    assert grew("a", "tx") >= icmp_bytes  # requests leave a
    assert grew("a", "rx") >= icmp_bytes  # replies come back to a
    assert grew("b", "rx") >= icmp_bytes
    assert grew("b", "tx") >= icmp_bytes
    assert grew("c", "rx") < icmp_bytes  # c only sees the ARP broadcast


def test_app_metrics_show_up_as_floats_and_strings_are_ignored(lab: Lab, sampler: Sampler) -> None:
    lab.exec("b", "sh", "-c", 'mkdir -p /fogify && echo \'{"records": 5, "latency_ms": 1.5, "name": "x"}\''
                              " > /fogify/metrics")
    try:
        metrics = sampler.sample_once()[name(lab, "b")]
        assert metrics["records"] == 5.0 and type(metrics["records"]) is float
        assert metrics["latency_ms"] == 1.5
        assert "name" not in metrics
        assert "records" not in sampler.sample_once()[name(lab, "a")]

        lab.exec("b", "sh", "-c", "printf '{\"records\": 6, \"lat' > /fogify/metrics")  # caught half-written
        half = sampler.sample_once()[name(lab, "b")]
        assert "records" not in half and half["memory"] > 0
    finally:
        lab.exec("b", "rm", "-rf", "/fogify")


def test_a_symlinked_metrics_file_is_not_followed_onto_the_host(lab: Lab, sampler: Sampler, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.json"
    secret.write_text(json.dumps({"leaked": 1}))
    lab.exec("b", "sh", "-c", f"mkdir -p /fogify && ln -sf {secret} /fogify/metrics")
    try:
        assert "leaked" not in sampler.sample_once()[name(lab, "b")]
    finally:
        lab.exec("b", "rm", "-rf", "/fogify")


def test_disk_bytes_is_the_writable_layer(lab: Lab, store: MetricStore) -> None:
    before = Sampler(lab.source(), store).sample_once()[name(lab, "c")]["disk_bytes"]
    code, output = lab.exec("c", "dd", "if=/dev/urandom", "of=/blob", "bs=1M", "count=5")
    assert code == 0, output
    try:
        after = Sampler(lab.source(), store).sample_once()[name(lab, "c")]["disk_bytes"]  # a fresh walk
        assert after - before >= 5 * MIB
    finally:
        lab.exec("c", "rm", "-f", "/blob")


def test_the_thread_samples_on_schedule_and_counters_only_grow(lab: Lab, store: MetricStore) -> None:
    sampler = Sampler(lab.source(), store, interval=0.5)
    sampler.start()
    try:
        lab.exec("a", "ping", "-c", "20", "-i", "0.05", "-q", lab.address("c"))
        time.sleep(2.0)
    finally:
        sampler.stop()
    records = store.records(instance=name(lab, "a"))[name(lab, "a")]
    assert len(records) >= 6
    assert [r["count"] for r in records] == list(range(1, len(records) + 1))
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(records)]
    assert all(0.4 <= g <= 0.6 for g in gaps), gaps
    for key in ("cpu", f"network_rx_{NETWORK}", f"network_tx_{NETWORK}"):
        values = [r[key] for r in records]
        assert values == sorted(values), key
    assert records[-1][f"network_tx_{NETWORK}"] > records[0][f"network_tx_{NETWORK}"]


def test_scaled_out_instances_join_and_removed_ones_drop_out(lab: Lab, sampler: Sampler) -> None:
    # Runs last among the tests that use c: it removes c's container.
    running = {"a": lab.targets["a"]}
    reader = CounterReader()
    sampler.source = lambda: reader.read(list(running.values()))
    assert set(sampler.sample_once()) == {name(lab, "a")}

    running["b"] = lab.targets["b"]  # scale out: sampled from the next round
    running["c"] = lab.targets["c"]
    assert set(sampler.sample_once()) == {name(lab, h) for h in HOSTS}

    lab.containers["c"].remove(force=True)  # crashed: still listed, its files are gone
    del lab.targets["c"]
    assert set(sampler.sample_once()) == {name(lab, "a"), name(lab, "b")}

    del running["b"]  # scale in
    assert set(sampler.sample_once()) == {name(lab, "a")}
    counts = {r["count"] for rs in sampler.store.records().values() for r in rs}
    assert counts == {1, 2, 3, 4}
