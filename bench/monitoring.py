"""CPU cost of the sampler and of the fidelity monitor per instance, beside an empty loop, and the store's layout.

1. Starts N idle containers (fogify-net/base, 0.5 CPU, 128 MiB, no Docker
   network), each with one veth port on a test bridge as fogify-net wires
   them, an HTB class on both ends of it (uplink in the container, downlink
   on the port), two queues of a fogify-delayd, and with --app-metrics a
   /fogify/metrics file of 8 numbers. Three threads run the same fixed-rate
   schedule for --duration seconds: one samples every container into a SQLite
   store, one reads and judges the fidelity readings as the controller does
   (this machine's CPU, each container's CPU cgroup, both HTB classes of each
   link over netlink, the delay queues' stats, and the monitor's checks), the
   third does nothing (the baseline). Reports each thread's CPU time
   (time.thread_time; for the monitor plus the helper's CPU answering its
   stats) per instance per second; the targets are under 0.5 ms (0.05 % of a
   core) per instance for the sampler and 0.2 ms (0.02 %) for the monitor.
2. Store layout: one row per instance and round with the metrics as JSON
   (what store.py does) against one row per metric, for writing rounds and
   reading them back in Fogify's shape.

    sudo PYTHONPATH=. /opt/fogify-net/venv/bin/python bench/monitoring.py [--n 50] [--duration 30] [--app-metrics]

Everything it creates is named fgt-mon-bench-* / fgtmb* (containers also carry
the label fgt=1) and removed at the end, also on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import docker

from fogify_net.host.counters import CounterReader, SampleTarget
from fogify_net.host.delayline import DelayLine
from fogify_net.host.fidelity import (
    DelayQueue,
    HostCpuReader,
    InstanceCpuReader,
    LinkTarget,
    Readings,
    read_link_queues,
)
from fogify_net.host.tcstats import ClassReader
from fogify_net.monitoring.fidelity import FidelityMonitor, SamplerHealth
from fogify_net.monitoring.sampler import Sampler
from fogify_net.monitoring.schedule import FixedRate
from fogify_net.monitoring.store import MetricStore, rfc1123

IMAGE = "fogify-net/base:latest"
PREFIX = "fgt-mon-bench-"
BRIDGE = "fgtmbbr0"
FIRST_QUEUE = 32500  # the delay queues' numbers (no rule feeds them: the helper only answers stats)
APP_METRICS = {"records": 12, "bytes_sent": 123456, "queue": 3, "errors": 0,
               "latency_ms": 1.5, "p99_ms": 7.25, "rate": 99.5, "uptime_s": 3600}


def sh(*args: str, check: bool = True, stdin: str | None = None) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True, input=stdin, timeout=120).stdout


def port(i: int) -> str:
    return f"fgtmb{i}"


def teardown(client: docker.DockerClient) -> None:
    doomed = [c for c in client.containers.list(all=True, filters={"label": "fgt=1"}) if c.name.startswith(PREFIX)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), doomed))
    sh("ip", "link", "del", BRIDGE, check=False)


def start(client: docker.DockerClient, n: int, app_metrics: bool) -> list[SampleTarget]:
    def one(i: int) -> SampleTarget:
        container = client.containers.run(
            IMAGE, ["sleep", "infinity"], name=f"{PREFIX}{i}", labels={"fgt": "1"}, detach=True,
            network_mode="none", cpu_quota=50000, cpu_period=100000, mem_limit="128m")
        container.reload()
        if app_metrics:
            container.exec_run(["sh", "-c", f"mkdir -p /fogify && echo '{json.dumps(APP_METRICS)}' > /fogify/metrics"])
        return SampleTarget(name=f"idle.{i + 1}", container_id=container.id, pid=container.attrs["State"]["Pid"],
                            cpus=0.5, memory_limit=128 * 2**20, ports={"bench-net": port(i)},
                            upper_dir=container.attrs["GraphDriver"]["Data"].get("UpperDir"))

    with ThreadPoolExecutor(8) as pool:
        targets = list(pool.map(one, range(n)))
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    batch = []
    for i, target in enumerate(targets):
        batch.append(f"link add {port(i)} type veth peer name eth0 netns {target.pid}")
        batch.append(f"link set {port(i)} master {BRIDGE} up")
    sh("ip", "-batch", "-", stdin="\n".join(batch) + "\n")
    htb = ["qdisc add dev {dev} root handle 1: htb default 1",
           "class add dev {dev} parent 1: classid 1:1 htb rate 100mbit"]
    sh("tc", "-batch", "-", stdin="".join(line.format(dev=port(i)) + "\n" for i in range(n) for line in htb))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: sh("nsenter", f"--net=/proc/{t.pid}/ns/net", "tc", "-batch", "-",
                                   stdin="".join(line.format(dev="eth0") + "\n" for line in htb)), targets))
    return targets


def timed_loop(interval: float, stop: threading.Event, tick: Callable[[], object], out: dict) -> None:
    """The thread body of both runs: the schedule, with the thread's CPU time around it."""
    began = time.thread_time()
    schedule = FixedRate(interval)
    schedule.run(stop, tick)
    out["cpu"] = time.thread_time() - began
    out["ticks"] = schedule.ticks
    out["skipped"] = schedule.skipped


class FidelityRound:
    """What the controller does for the fidelity monitor each round, on the bench's containers and links."""

    def __init__(self, targets: list[SampleTarget], line: DelayLine, interval: float):
        self.targets = targets
        self.line = line
        self.interval = interval
        self.host = HostCpuReader("bench")
        self.cpu = InstanceCpuReader("bench")
        self.classes = ClassReader()
        self.monitor = FidelityMonitor()
        self.links = [LinkTarget(t.name, "bench-net", direction, where, device, {1: ""})
                      for i, t in enumerate(targets)
                      for direction, where, device in (("uplink", t.pid, "eth0"), ("downlink", None, port(i)))]
        self.queues = {FIRST_QUEUE + 2 * i + k: (t.name, ("uplink", "downlink")[k])
                       for i, t in enumerate(targets) for k in (0, 1)}
        self.verdict = None

    def __call__(self) -> None:
        readings = Readings({"bench": self.host.read()})
        readings.instances = self.cpu.read({t.container_id: (t.name, t.pid, t.cpus) for t in self.targets})
        readings.links = read_link_queues(self.classes, self.links, "bench")
        for queue, stats in self.line.stats().items():
            name, direction = self.queues[queue]
            readings.delays.append(DelayQueue(name, "bench-net", direction, "", "bench", queue, 10.0, stats.pkts,
                                              stats.released, stats.dropped, stats.held, stats.late_hist))
        self.verdict = self.monitor.observe(time.time(), readings, SamplerHealth(self.interval, 0, 0.0))

    def close(self) -> None:
        self.host.close()
        self.cpu.close()
        self.classes.close()


def helper_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def measure_sampler(targets: list[SampleTarget], duration: float, interval: float) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="fgtmb") as tmp:
        store = MetricStore(os.path.join(tmp, "bench.db"))
        store_cpu = [0.0]
        add_round = store.add_round

        def timed_add_round(ts: float, samples: dict) -> int:
            began = time.thread_time()
            try:
                return add_round(ts, samples)
            finally:
                store_cpu[0] += time.thread_time() - began

        store.add_round = timed_add_round  # type: ignore[method-assign]
        reader = CounterReader()
        sampler = Sampler(lambda: reader.read(targets), store, interval)
        line = DelayLine(run_dir=tmp, name="fgtmb-delayd")
        line.start()
        for queue in range(FIRST_QUEUE, FIRST_QUEUE + 2 * len(targets)):
            line.set_queue(queue, 10.0)
        fidelity = FidelityRound(targets, line, interval)
        walls: list[float] = []

        def sample() -> None:
            began = time.perf_counter()
            sampler.sample_once()
            walls.append(time.perf_counter() - began)

        results: dict[str, dict] = {"sampler": {}, "fidelity monitor": {}, "empty loop": {}}
        stop = threading.Event()
        threads = [threading.Thread(target=timed_loop, args=(interval, stop, sample, results["sampler"])),
                   threading.Thread(target=timed_loop, args=(interval, stop, fidelity, results["fidelity monitor"])),
                   threading.Thread(target=timed_loop, args=(interval, stop, lambda: None, results["empty loop"]))]
        helper_before = helper_cpu_s(line.pid)
        for thread in threads:
            thread.start()
        time.sleep(duration)
        stop.set()
        for thread in threads:
            thread.join()
        results["fidelity monitor"]["helper"] = helper_cpu_s(line.pid) - helper_before
        results["fidelity monitor"]["cpu"] += results["fidelity monitor"]["helper"]
        results["fidelity monitor"]["state"] = fidelity.verdict.state if fidelity.verdict else "none"
        results["fidelity monitor"]["links"] = len(fidelity.links)
        fidelity.close()
        line.stop()
        results["sampler"]["store"] = store_cpu[0]
        results["sampler"]["wall_p50"] = statistics.median(walls)
        results["sampler"]["wall_max"] = max(walls)
        results["sampler"]["metrics"] = len(store.records(instance=targets[0].name)[targets[0].name][-1]) - 3
        sampler.stop()
        store.close()
        return results


# --- store layout --------------------------------------------------------------------------------


def fake_round(n: int, i: int) -> dict[str, dict[str, float]]:
    return {f"idle.{k}": {"cpu": 1e6 * i, "cpu_util": 1.0, "memory": 3e6, "memory_util": 2.0, "disk_bytes": 12288.0,
                          "network_rx_bench-net": 100.0 * i, "network_tx_bench-net": 90.0 * i,
                          "records": float(i), "latency_ms": 1.5, "rate": 99.5} for k in range(1, n + 1)}


class NormalisedStore:
    """The alternative layout: one row per (instance, round, metric)."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript("""
            CREATE TABLE records (id INTEGER PRIMARY KEY, instance TEXT, count INTEGER, ts REAL);
            CREATE INDEX records_instance_ts ON records (instance, ts);
            CREATE TABLE metrics (record INTEGER, name TEXT, value REAL, PRIMARY KEY (record, name)) WITHOUT ROWID;
        """)
        self.count = 0

    def add_round(self, ts: float, samples: dict[str, dict[str, float]]) -> int:
        self.count += 1
        self.conn.execute("BEGIN")
        for name, metrics in samples.items():
            record = self.conn.execute("INSERT INTO records (instance, count, ts) VALUES (?, ?, ?)",
                                       (name, self.count, ts)).lastrowid
            self.conn.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                                  [(record, key, value) for key, value in metrics.items()])
        self.conn.execute("COMMIT")
        return self.count

    def records(self, instance: str | None = None) -> dict[str, list[dict]]:
        where, args = ("WHERE r.instance = ? ", (instance,)) if instance is not None else ("", ())
        rows = self.conn.execute("SELECT r.id, r.instance, r.count, r.ts, m.name, m.value FROM records r "
                                 f"JOIN metrics m ON m.record = r.id {where}ORDER BY r.instance, r.count",
                                 args).fetchall()
        result: dict[str, list[dict]] = {}
        last = None
        for record, name_, count, ts, name, value in rows:
            if record != last:
                last = record
                current = {"count": count, "timestamp": rfc1123(ts), "ts": ts}
                result.setdefault(name_, []).append(current)
            current[name] = value
        return result

    def close(self) -> None:
        self.conn.close()


def measure_store(n: int, rounds: int) -> list[tuple[str, float, float, float, int]]:
    """(layout, ms per round written, s to read everything, ms to read one instance, file bytes)."""
    results = []
    for layout, make in (("JSON per record (store.py)", MetricStore), ("row per metric", NormalisedStore)):
        with tempfile.TemporaryDirectory(prefix="fgtmb") as tmp:
            path = os.path.join(tmp, "layout.db")
            store = make(path)
            began = time.perf_counter()
            for i in range(rounds):
                store.add_round(1.6e9 + i, fake_round(n, i))
            write_ms = (time.perf_counter() - began) / rounds * 1000
            began = time.perf_counter()
            everything = store.records()
            read_all = time.perf_counter() - began
            assert sum(len(v) for v in everything.values()) == n * rounds
            began = time.perf_counter()
            assert len(store.records(instance="idle.1")["idle.1"]) == rounds
            read_one = (time.perf_counter() - began) * 1000
            store.close()
            size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
            results.append((layout, write_ms, read_all, read_one, size))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="idle containers (default 50)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sampling (default 30; 0: skip)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--app-metrics", action="store_true", help="give every container a /fogify/metrics file")
    parser.add_argument("--store-rounds", type=int, default=1800, help="rounds for the layout comparison (0: skip)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (veth pairs in container namespaces, cgroup files)", file=sys.stderr)
        return 2

    if args.n and args.duration:
        sample_containers(args)
    if args.store_rounds:
        print(f"\n### Store layout: {args.n} instances x 10 metrics x {args.store_rounds} rounds\n")
        print("| layout | ms per round written | s to read all | ms to read one instance | file MB |")
        print("|---|---:|---:|---:|---:|")
        for layout, write_ms, read_all, read_one, size in measure_store(args.n, args.store_rounds):
            print(f"| {layout} | {write_ms:.2f} | {read_all:.2f} | {read_one:.1f} | {size / 1e6:.1f} |")
    return 0


def sample_containers(args: argparse.Namespace) -> None:
    client = docker.from_env(timeout=120)
    teardown(client)
    try:
        print(f"starting {args.n} containers ...", file=sys.stderr)
        targets = start(client, args.n, args.app_metrics)
        print(f"sampling for {args.duration:.0f} s ...", file=sys.stderr)
        results = measure_sampler(targets, args.duration, args.interval)
    finally:
        teardown(client)

    seconds = args.duration
    print(f"\n### Sampler: {args.n} idle containers, {seconds:.0f} s at {args.interval:g} s"
          f"{', with app metrics' if args.app_metrics else ''} ({results['sampler']['metrics']} metrics each)\n")
    print("| thread | rounds | skipped | CPU s | ms CPU / s | ms CPU / instance / s | % of a core / instance |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        per_s = r["cpu"] / seconds * 1000
        per_instance = per_s / args.n
        print(f"| {label} | {r['ticks']} | {r['skipped']} | {r['cpu']:.3f} | {per_s:.2f} | {per_instance:.4f} "
              f"| {per_instance / 10:.5f} |")
    s = results["sampler"]
    net = (s["cpu"] - results["empty loop"]["cpu"]) / seconds * 1000 / args.n
    print(f"\nSampler minus empty loop: **{net:.4f} ms CPU per instance per second** "
          f"({net / 10:.5f} % of a core; target < 0.5 ms / 0.05 %). "
          f"Of the sampler's CPU, the SQLite write is {s['store'] / s['cpu'] * 100:.0f} %. "
          f"Round wall time: median {s['wall_p50'] * 1000:.2f} ms, max {s['wall_max'] * 1000:.2f} ms.")
    f = results["fidelity monitor"]
    net = (f["cpu"] - results["empty loop"]["cpu"]) / seconds * 1000 / args.n
    print(f"\nFidelity monitor minus empty loop: **{net:.4f} ms CPU per instance per second** "
          f"({net / 10:.5f} % of a core; target < 0.2 ms / 0.02 %), reading {f['links']} HTB classes and "
          f"{2 * args.n} delay queues each round; of it, fogify-delayd answering stats "
          f"{f['helper'] / seconds * 1000 / args.n:.4f} ms. Verdict at the end: {f['state']}.")


if __name__ == "__main__":
    sys.exit(main())
