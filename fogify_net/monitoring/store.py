"""Metric records, annotations, packet flows and fidelity episodes in SQLite, in Fogify's JSON shapes.

One row per instance and sampling round, the metrics as a JSON object: a round
of 50 instances is one transaction of 50 rows, and a query decodes one small
JSON text per record (see `bench/monitoring.py` for the numbers against a
normalised metric table). The file survives a restart of the process: records,
annotations and the round counter are all in it. WAL lets the API read while
the sampler writes; one lock serialises this process's use of the connection.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id       INTEGER PRIMARY KEY,
    instance TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    ts       REAL    NOT NULL,
    metrics  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS records_instance_ts ON records (instance, ts);
CREATE TABLE IF NOT EXISTS annotations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ts            REAL NOT NULL,
    annotation    TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    params        TEXT
);
CREATE TABLE IF NOT EXISTS packets (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ts            REAL    NOT NULL,
    network       TEXT    NOT NULL,
    src_ip        TEXT    NOT NULL,
    dest_ip       TEXT    NOT NULL,
    protocol      TEXT    NOT NULL,
    src_port      INTEGER NOT NULL,
    dest_port     INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    src_instance  TEXT    NOT NULL,
    dest_instance TEXT    NOT NULL,
    src_label     TEXT    NOT NULL,
    dest_label    TEXT    NOT NULL,
    src_watched   INTEGER NOT NULL,
    dest_watched  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS packets_ts ON packets (ts);
CREATE TABLE IF NOT EXISTS fidelity (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    start_ts  REAL NOT NULL,
    end_ts    REAL,
    check_name TEXT NOT NULL,
    target    TEXT NOT NULL,
    instances TEXT NOT NULL,
    network   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    worst     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fidelity_start ON fidelity (start_ts);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

PACKET_COLUMNS = ("network", "src_ip", "dest_ip", "protocol", "src_port", "dest_port", "count", "size",
                  "src_instance", "dest_instance", "src_label", "dest_label", "src_watched", "dest_watched")
HIDDEN_PACKET_COLUMNS = {"src_label", "dest_label", "src_watched", "dest_watched"}
PRUNE_EVERY = 60.0  # seconds of record time between two retention passes
# The default retention (README "Monitoring"): the oldest go first past either bound. An instance's record
# is ~150 bytes of metrics plus its app's (at most appmetrics.MAX_KEYS keys), so 1,000,000 records are
# 7 instances sampled every second for ~40 hours, and the metric text is at most 512 MiB whatever the apps write.
MAX_RECORDS = 1_000_000
MAX_RECORD_BYTES = 512 * 2**20
MAX_PACKETS = 1_000_000  # flow rows (a busy network adds a few hundred every 5 s period)


_decoder = json.JSONDecoder()


def _encode(metrics: dict[str, float]) -> str:
    """Values as floats once, at write time, so reading needs no per-value conversion."""
    return json.dumps({key: float(value) for key, value in metrics.items()}, separators=(",", ":"))


def _where(conditions: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """(" WHERE a = ? AND ...", values) for the conditions whose value is given; ("", []) for none."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    if not given:
        return "", []
    return " WHERE " + " AND ".join(clause for clause, _ in given), [value for _, value in given]


def rfc1123(ts: float) -> str:
    """Fogify's timestamp text: `Thu, 17 Sep 2020 12:24:44 GMT`, UTC, whole seconds."""
    return formatdate(ts, usegmt=True)


class MetricStore:
    """Sampling rounds and annotations of one controller, in one SQLite file.

    Fogify kept everything until DELETE /monitorings/; here the records are
    bounded by `max_rows` rows and `max_bytes` bytes of metric text, and the
    packet rows by `max_packets` (None: no bound), and optionally by
    `max_age` seconds. Each bound is enforced at most once per minute of
    record time (packets: per period), oldest rows first, so a table may
    exceed it by one minute's worth.
    """

    def __init__(self, path: str | Path, max_age: float | None = None, max_rows: int | None = MAX_RECORDS,
                 max_bytes: int | None = MAX_RECORD_BYTES, max_packets: int | None = MAX_PACKETS):
        self.path = str(path)
        self.max_age = max_age
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_packets = max_packets
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses at most the last rounds
        self._conn.executescript(SCHEMA)
        self._counter = self._read_counter()
        self._pruned_at: float | None = None
        (bytes_now,) = self._conn.execute("SELECT COALESCE(SUM(LENGTH(metrics)), 0) FROM records").fetchone()
        self._record_bytes = int(bytes_now)  # kept current by add_round and the pruning

    def _read_counter(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
        (highest,) = self._conn.execute("SELECT MAX(count) FROM records").fetchone()
        return max(row[0] if row else 0, highest or 0)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK on any error; the caller holds the lock."""
        self._conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- records ----------------------------------------------------------------------------

    def add_round(self, ts: float, samples: dict[str, dict[str, float]]) -> int:
        """Store one round (instance -> metrics) under the next count, in one transaction; returns the count.

        The counter moves on even for an empty round, as Fogify's does, so a
        count identifies one instant across instances.
        """
        with self._lock:
            count = self._counter + 1
            rows = [(name, count, ts, _encode(metrics)) for name, metrics in samples.items()]
            with self._transaction():
                self._conn.executemany("INSERT INTO records (instance, count, ts, metrics) VALUES (?, ?, ?, ?)", rows)
                self._record_bytes += sum(len(row[3]) for row in rows)
                self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('count', ?)", (count,))
                self._prune(ts)
            self._counter = count
            return count

    def _prune(self, ts: float) -> None:
        if self.max_age is None and self.max_rows is None and self.max_bytes is None:
            return
        if self._pruned_at is not None and ts - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = ts
        cutoff = None  # the newest id to delete
        if self.max_age is not None:
            (cutoff,) = self._conn.execute("SELECT MAX(id) FROM records WHERE ts < ?", (ts - self.max_age,)).fetchone()
        if self.max_rows is not None:
            row = self._conn.execute("SELECT id FROM records ORDER BY id DESC LIMIT 1 OFFSET ?",
                                     (self.max_rows,)).fetchone()
            cutoff = max(cutoff or 0, row[0]) if row else cutoff
        if self.max_bytes is not None and self._record_bytes > self.max_bytes:
            excess = self._record_bytes - self.max_bytes
            freed = 0
            for row_id, size in self._conn.execute("SELECT id, LENGTH(metrics) FROM records ORDER BY id"):
                freed += size
                if freed >= excess:
                    cutoff = max(cutoff or 0, row_id)
                    break
        if cutoff is not None:
            (freed,) = self._conn.execute("SELECT COALESCE(SUM(LENGTH(metrics)), 0) FROM records WHERE id <= ?",
                                          (cutoff,)).fetchone()
            self._conn.execute("DELETE FROM records WHERE id <= ?", (cutoff,))
            self._record_bytes -= int(freed)
            log.info("retention: removed records up to id %d", cutoff)

    def _prune_packets(self) -> None:
        if self.max_packets is None:
            return
        self._conn.execute(
            "DELETE FROM packets WHERE id <= (SELECT id FROM packets ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (self.max_packets,))

    def records(self, instance: str | None = None, from_ts: float | None = None,
                to_ts: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """Fogify's /monitorings/ answer: {instance: [{metric: float, ..., count, timestamp, ts}]} by count.

        `from_ts` and `to_ts` are strict bounds (`>`, `<`) as in Fogify;
        `instance` matches one name exactly.
        """
        return self.records_page(instance, from_ts, to_ts)[0]

    def _page(self, sql: str, args: list, limit: int | None) -> tuple[list[tuple], int | None]:
        """The rows of `sql` (ordered by id, the first column), at most `limit`, and the id after
        which the next page starts (None when this is the last)."""
        if limit is not None:
            sql += f" LIMIT {int(limit) + 1}"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        if limit is not None and len(rows) > limit:
            return rows[:limit], rows[limit - 1][0]
        return rows, None

    def records_page(self, instance: str | None = None, from_ts: float | None = None, to_ts: float | None = None,
                     limit: int | None = None, after: int | None = None) -> tuple[dict[str, list[dict]], int | None]:
        """`records` of at most `limit` records, those stored after the record `after`; and the `after`
        of the next page (None when this is the last). Each instance's records stay in count order."""
        where, args = _where([("instance = ?", instance), ("ts > ?", from_ts), ("ts < ?", to_ts),
                              ("id > ?", after)])
        rows, following = self._page(f"SELECT id, instance, count, ts, metrics FROM records{where} ORDER BY id",
                                     args, limit)
        rows.sort(key=lambda row: (row[1], row[2]))
        result: dict[str, list[dict[str, Any]]] = {}
        stamps: dict[float, str] = {}  # every instance of a round shares its ts: format it once
        decode = _decoder.decode
        for _, name, count, ts, metrics in rows:
            record = decode(metrics)
            record["count"] = count
            stamp = stamps.get(ts)
            if stamp is None:
                stamp = stamps[ts] = rfc1123(ts)
            record["timestamp"] = stamp
            record["ts"] = ts
            result.setdefault(name, []).append(record)
        return result, following

    def mark_degraded(self, instances: list[str] | tuple[str, ...], since: float) -> None:
        """Set `fidelity` 0 in the instances' records from `since` on: an episode found late (a check that
        needs two bad rounds) covers the rounds already stored."""
        if not instances:
            return
        marks = ", ".join("?" * len(instances))
        with self._lock:
            self._conn.execute(
                "UPDATE records SET metrics = json_set(metrics, '$.fidelity', 0.0) "
                f"WHERE ts >= ? AND instance IN ({marks}) AND json_extract(metrics, '$.fidelity') IS NOT NULL",
                (since, *instances))

    def clear_records(self) -> None:
        """Delete every record and fidelity episode and restart the round counter at 1 (Fogify's DELETE
        /monitorings/: the episodes describe the records)."""
        with self._lock, self._transaction():
            self._conn.execute("DELETE FROM records")
            self._conn.execute("DELETE FROM fidelity")
            self._conn.execute("DELETE FROM meta WHERE key = 'count'")
            self._counter = 0
            self._pruned_at = None
            self._record_bytes = 0

    # --- annotations ------------------------------------------------------------------------

    def annotate(self, annotation: str, instance_name: str, params: str | None, ts: float | None = None) -> None:
        """Record that an action happened (START, DEPLOY, H_SCALE_UP, ...), at `ts` or now."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO annotations (ts, annotation, instance_name, params) VALUES (?, ?, ?, ?)",
                (time.time() if ts is None else ts, annotation, instance_name, params))

    def annotations(self) -> list[dict[str, Any]]:
        """Fogify's /annotations/ answer, in insertion order, each with `ts` (epoch seconds) as well."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT ts, annotation, instance_name, params FROM annotations ORDER BY id").fetchall()
        return [{"timestamp": rfc1123(ts), "annotation": annotation, "instance_name": name, "params": params,
                 "ts": ts} for ts, annotation, name, params in rows]

    def clear_annotations(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM annotations")

    # --- fidelity episodes ------------------------------------------------------------------

    def add_episode(self, episode: dict[str, Any]) -> int:
        """Store an episode ({check, target, start, end, instances, network, reason, worst}); returns its id."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO fidelity (start_ts, end_ts, check_name, target, instances, network, reason, worst) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (episode["start"], episode["end"], episode["check"], episode["target"],
                 json.dumps(list(episode["instances"])), episode["network"], episode["reason"], episode["worst"]))
            return int(cursor.lastrowid)

    def update_episode(self, episode_id: int, episode: dict[str, Any]) -> None:
        """Its end, reason, worst value and instances as they are now."""
        with self._lock:
            self._conn.execute(
                "UPDATE fidelity SET end_ts = ?, reason = ?, worst = ?, instances = ? WHERE id = ?",
                (episode["end"], episode["reason"], episode["worst"], json.dumps(list(episode["instances"])),
                 episode_id))

    def episodes(self, from_ts: float | None = None, to_ts: float | None = None,
                 instance: str | None = None) -> list[dict[str, Any]]:
        """Episodes overlapping (from_ts, to_ts), oldest first; `instance`: those that marked it."""
        where, args = _where([("(end_ts IS NULL OR end_ts > ?)", from_ts), ("start_ts < ?", to_ts)])
        with self._lock:
            rows = self._conn.execute(
                "SELECT start_ts, end_ts, check_name, target, instances, network, reason, worst "
                f"FROM fidelity{where} ORDER BY start_ts, id", args).fetchall()
        result = []
        for start, end, check, target, instances, network, reason, worst in rows:
            names = json.loads(instances)
            if instance is not None and instance not in names:
                continue
            result.append({"start": start, "end": end, "check": check, "target": target, "instances": names,
                           "network": network, "reason": reason, "worst": worst})
        return result

    # --- packets ----------------------------------------------------------------------------

    def add_packets(self, ts: float, rows: list[dict[str, Any]]) -> None:
        """Store one period of flow rows (see fogify_net.monitoring.flows.flow_rows) at `ts`."""
        with self._lock, self._transaction():
            self._conn.executemany(
                f"INSERT INTO packets (ts, {', '.join(PACKET_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(PACKET_COLUMNS))})",
                [(ts, *(row[column] for column in PACKET_COLUMNS)) for row in rows])
            self._prune_packets()

    def packets(self, service: str | None = None, from_ts: float | None = None, to_ts: float | None = None,
                protocol: str | None = None) -> list[dict[str, Any]]:
        """Fogify's /packets/ rows: a flow's period once for each monitored end, that end as `service_id`.

        Fogify sniffed inside each container, so traffic between two monitored
        instances appeared under both. `service` is a label or an instance name
        (exact); the time bounds are strict, as for records.
        """
        return self.packets_page(service, from_ts, to_ts, protocol)[0]

    def packets_page(self, service: str | None = None, from_ts: float | None = None, to_ts: float | None = None,
                     protocol: str | None = None, limit: int | None = None,
                     after: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """`packets` of at most `limit` stored flow rows after row `after` (each gives one or two
        answer rows), and the `after` of the next page (None when this is the last)."""
        where, args = _where([("ts > ?", from_ts), ("ts < ?", to_ts), ("protocol = ?", protocol),
                              ("id > ?", after)])
        rows, following = self._page(f"SELECT id, ts, {', '.join(PACKET_COLUMNS)} FROM packets{where} ORDER BY id",
                                     args, limit)
        result = []
        for row_id, ts, *values in rows:
            row = dict(zip(PACKET_COLUMNS, values))
            for side in ("src", "dest"):
                if not row[f"{side}_watched"]:
                    continue
                label, instance = row[f"{side}_label"], row[f"{side}_instance"]
                if service is not None and service not in (label, instance):
                    continue
                result.append({
                    "id": row_id, "service_id": label, "timestamp": rfc1123(ts), "ts": ts,
                    **{k: v for k, v in row.items() if k not in HIDDEN_PACKET_COLUMNS},
                })
        return result, following

    def clear_packets(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM packets")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
