"""The metric store answers in Fogify's shapes, and the sampler's pure parts behave.

Store: what the REST routes return for /monitorings/ and /annotations/, the
round counter surviving a restart, strict time filters, retention. Sampler:
the app-metric filter, the fixed-rate schedule, and instances that are gone.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fogify_net.host.appmetrics import parse_app_metrics
from fogify_net.host.counters import CounterReader, SampleTarget
from fogify_net.monitoring.sampler import Sampler
from fogify_net.monitoring.schedule import FixedRate
from fogify_net.monitoring.store import MetricStore, rfc1123

RFC1123 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
T0 = 1600345484.25  # Thu, 17 Sep 2020 12:24:44.25 GMT


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fogify.db"


@pytest.fixture
def store(db: Path):
    s = MetricStore(db)
    yield s
    s.close()


def two_instances(i: int) -> dict[str, dict[str, float]]:
    return {
        "edge.1": {"cpu": 1e6 * i, "cpu_util": 10.0, "memory": 1000, "network_rx_edge-net": 10 * i},
        "edge.2": {"cpu": 2e6 * i, "cpu_util": 20.0, "memory": 2000, "network_rx_edge-net": 20 * i},
    }


# --- records ------------------------------------------------------------------------------------


def test_a_round_is_one_count_for_every_instance_in_fogify_shape(store: MetricStore) -> None:
    assert store.add_round(T0, two_instances(1)) == 1
    assert store.add_round(T0 + 1, two_instances(2)) == 2

    records = store.records()

    assert set(records) == {"edge.1", "edge.2"}
    first = records["edge.1"][0]
    assert first == {"cpu": 1e6, "cpu_util": 10.0, "memory": 1000.0, "network_rx_edge-net": 10.0,
                     "count": 1, "timestamp": "Thu, 17 Sep 2020 12:24:44 GMT", "ts": T0}
    assert all(type(value) is float for key, value in first.items() if key not in ("count", "timestamp"))
    assert type(first["count"]) is int
    assert [r["count"] for r in records["edge.2"]] == [1, 2]
    json.dumps(records)  # the REST layer returns it as is


def test_records_are_sorted_by_count_whatever_the_insertion_timestamps(store: MetricStore) -> None:
    store.add_round(T0 + 5, {"a.1": {"cpu": 1}})
    store.add_round(T0 + 1, {"a.1": {"cpu": 2}})  # a clock step back must not reorder counts
    assert [r["count"] for r in store.records()["a.1"]] == [1, 2]


def test_instance_filter_is_an_exact_name(store: MetricStore) -> None:
    store.add_round(T0, {"car.1": {"cpu": 1}, "car.10": {"cpu": 2}, "car.1x": {"cpu": 3}})
    assert list(store.records(instance="car.1")) == ["car.1"]
    assert store.records(instance="car") == {}
    assert store.records(instance="%") == {}


def test_time_bounds_are_strict_like_fogify(store: MetricStore) -> None:
    for i in range(5):
        store.add_round(T0 + i, {"a.1": {"cpu": i}})

    def counts(**bounds: float | str) -> list[int]:
        return [r["count"] for r in store.records(**bounds).get("a.1", [])]

    assert counts(from_ts=T0 + 1) == [3, 4, 5]
    assert counts(to_ts=T0 + 3) == [1, 2, 3]
    assert counts(from_ts=T0 + 1, to_ts=T0 + 3) == [3]
    assert counts(from_ts=T0 + 1, to_ts=T0 + 2) == []
    assert counts(instance="a.1", from_ts=T0 + 3.5) == [5]


def test_the_counter_and_the_records_survive_a_restart(db: Path) -> None:
    first = MetricStore(db)
    first.add_round(T0, two_instances(1))
    first.add_round(T0 + 1, two_instances(2))
    first.close()

    second = MetricStore(db)
    try:
        assert second.add_round(T0 + 2, two_instances(3)) == 3
        assert [r["count"] for r in second.records()["edge.1"]] == [1, 2, 3]
    finally:
        second.close()


def test_clearing_records_restarts_the_counter_and_keeps_annotations(db: Path) -> None:
    store = MetricStore(db)
    store.add_round(T0, two_instances(1))
    store.annotate("DEPLOY", "Topology", None, ts=T0)
    store.clear_records()
    assert store.records() == {}
    assert store.add_round(T0 + 1, two_instances(2)) == 1
    store.close()
    reopened = MetricStore(db)
    assert reopened.add_round(T0 + 2, two_instances(3)) == 2
    assert len(reopened.annotations()) == 1
    reopened.close()


def test_rounds_from_many_threads_get_distinct_counts(store: MetricStore) -> None:
    counts: list[int] = []

    def writer(k: int) -> None:
        for i in range(50):
            counts.append(store.add_round(T0 + i, {f"w.{k}": {"cpu": i}}))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 201))
    assert sum(len(v) for v in store.records().values()) == 200


def test_the_database_is_in_wal_mode_and_readable_while_written(db: Path, store: MetricStore) -> None:
    store.add_round(T0, two_instances(1))
    reader = sqlite3.connect(db)
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO records (instance, count, ts, metrics) VALUES ('x.1', 99, 0, '{}')")
        # A reader is not blocked by an open write transaction, and sees the last commit.
        assert reader.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2
        assert len(store.records()) == 2
        writer.execute("ROLLBACK")
        writer.close()
    finally:
        reader.close()
    assert {p.name for p in db.parent.iterdir()} >= {"fogify.db", "fogify.db-wal"}


def test_retention_by_age_drops_old_rows(db: Path) -> None:
    store = MetricStore(db, max_age=100)
    for i in range(0, 400, 10):
        store.add_round(T0 + i, {"a.1": {"cpu": i}})
    kept = store.records()["a.1"]
    # Pruning runs at most once per minute of record time, so up to 60 s more than max_age stays.
    assert kept[-1]["count"] == 40
    assert T0 + 390 - 160 <= kept[0]["ts"] <= T0 + 390 - 100
    store.close()


def test_retention_by_rows_keeps_the_newest(db: Path) -> None:
    store = MetricStore(db, max_rows=10)
    for i in range(200):
        store.add_round(T0 + i, {"a.1": {"cpu": i}, "a.2": {"cpu": i}})
    rows = sum(len(v) for v in store.records().values())
    assert 10 <= rows <= 10 + 2 * 60
    assert store.records()["a.1"][-1]["count"] == 200
    store.close()


def test_no_retention_by_default(store: MetricStore) -> None:
    for i in range(100):
        store.add_round(T0 - 10**6 + i * 1000, {"a.1": {"cpu": i}})
    assert len(store.records()["a.1"]) == 100


# --- annotations ---------------------------------------------------------------------------------


def test_annotations_come_back_in_insertion_order_in_fogify_shape(store: MetricStore) -> None:
    store.annotate("START", "Topology", None, ts=T0 + 10)
    store.annotate("H_SCALE_UP", "edge", "num of instances: 2", ts=T0)  # older time, later insertion
    store.annotate("DEPLOY", "Topology", None)

    annotations = store.annotations()

    assert [a["annotation"] for a in annotations] == ["START", "H_SCALE_UP", "DEPLOY"]
    assert annotations[1] == {"timestamp": "Thu, 17 Sep 2020 12:24:44 GMT", "annotation": "H_SCALE_UP",
                              "instance_name": "edge", "params": "num of instances: 2", "ts": T0}
    assert annotations[0]["params"] is None
    assert abs(annotations[2]["ts"] - time.time()) < 5
    store.clear_annotations()
    assert store.annotations() == []


def test_rfc1123_is_utc_with_whole_seconds() -> None:
    assert rfc1123(1600345484.999) == "Thu, 17 Sep 2020 12:24:44 GMT"
    assert rfc1123(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert RFC1123.match(rfc1123(time.time()))


# --- the sampler's pure parts -------------------------------------------------------------------


def test_app_metrics_keep_finite_numbers_and_not_builtin_names() -> None:
    data = json.dumps({"records": 5, "latency_ms": 1.5, "name": "x", "ok": True, "neg": -3, "none": None,
                       "cpu": 7, "memory_util": 1, "network_rx_internet": 9, "count": 1, "ts": 2,
                       "nested": {"a": 1}}).encode()
    assert parse_app_metrics(data) == {"records": 5.0, "latency_ms": 1.5, "neg": -3.0}
    assert parse_app_metrics(b'{"a": 1e999, "b": NaN, "c": 2}') == {"c": 2.0}


@pytest.mark.parametrize("data", [b'{"records": 5, "lat', b"", b"[1, 2]", b"5", b"\xff\xfe", b"[" * 50000])
def test_bad_app_metrics_are_skipped_not_raised(data: bytes) -> None:
    assert parse_app_metrics(data) == {}


def test_the_schedule_does_not_drift_and_skips_after_an_overrun() -> None:
    # Slots of 0.2 s leave room for a loaded machine's late wake-ups (tolerance: 0.3 of a slot).
    schedule = FixedRate(0.2)
    stop = threading.Event()
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 5:
            time.sleep(0.48)  # overruns into the next two slots
        if len(ticks) == 12:
            stop.set()

    schedule.run(stop, tick)
    start = ticks[0]
    slots = [(t - start) / 0.2 for t in ticks]
    # Every tick fires on a slot boundary (no accumulated drift), slots 5 and 6 are skipped.
    assert all(abs(s - round(s)) < 0.3 for s in slots), slots
    assert [round(s) for s in slots] == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13]
    assert schedule.skipped == 2


def test_a_target_that_is_gone_is_skipped_and_not_stored(store: MetricStore) -> None:
    gone = SampleTarget(name="edge.1", container_id="0" * 64, pid=2**22 + 1, cpus=0.5,
                        memory_limit=128 * 2**20, ports={"edge-net": "fgtnope0"})
    reader = CounterReader()
    sampler = Sampler(lambda: reader.read([gone]), store, interval=0.05)
    assert sampler.sample_once() == {}
    assert store.records() == {}


def test_a_failing_round_does_not_stop_the_thread(store: MetricStore) -> None:
    calls = []

    def samples() -> dict:
        calls.append(1)
        raise RuntimeError("the emulation is being torn down")

    sampler = Sampler(samples, store, interval=0.02)
    sampler.start()
    time.sleep(0.2)
    sampler.stop()
    assert len(calls) >= 5
    assert sampler.rounds == len(calls)


# --- fidelity episodes ---------------------------------------------------------------------------


def episode(start: float, end: float | None, instances=("a.1",), check: str = "host_cpu") -> dict:
    return {"check": check, "target": "box", "start": start, "end": end, "instances": list(instances),
            "network": "", "reason": "host CPU saturated 97% for 2 s", "worst": 97.0}


def test_episodes_overlapping_a_window_and_an_instance(store: MetricStore):
    first = store.add_episode(episode(T0, T0 + 5))
    store.add_episode(episode(T0 + 20, None, instances=("b.1",)))
    assert [e["start"] for e in store.episodes()] == [T0, T0 + 20]
    assert [e["start"] for e in store.episodes(from_ts=T0 + 6)] == [T0 + 20]  # the open one overlaps anything later
    assert [e["start"] for e in store.episodes(to_ts=T0 + 1)] == [T0]
    assert [e["instances"] for e in store.episodes(instance="b.1")] == [["b.1"]]
    store.update_episode(first, {**episode(T0, T0 + 9), "worst": 99.0, "reason": "worse"})
    assert store.episodes(instance="a.1")[0] == {**episode(T0, T0 + 9), "worst": 99.0, "reason": "worse"}


def test_an_episode_marks_the_rounds_already_stored_and_clearing_the_records_clears_it(store: MetricStore):
    for i in range(4):
        store.add_round(T0 + i, {"a.1": {"cpu": 1.0, "fidelity": 1.0}, "b.1": {"cpu": 1.0, "fidelity": 1.0}})
    store.add_round(T0 - 1, {"a.1": {"cpu": 1.0}})  # before the monitor's first verdict: no mark to change
    store.mark_degraded(["a.1"], T0 + 2)
    marks = [(r["ts"] - T0, r.get("fidelity")) for r in store.records(instance="a.1")["a.1"]]
    assert sorted(marks) == [(-1, None), (0, 1.0), (1, 1.0), (2, 0.0), (3, 0.0)]
    assert {r["fidelity"] for r in store.records(instance="b.1")["b.1"]} == {1.0}
    store.add_episode(episode(T0, None))
    store.clear_records()
    assert store.episodes() == [] and store.records() == {}
