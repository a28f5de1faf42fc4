"""Metric records, annotations and packet flows in SQLite, returned in Fogify's JSON shapes.

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
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

PACKET_COLUMNS = ("network", "src_ip", "dest_ip", "protocol", "src_port", "dest_port", "count", "size",
                  "src_instance", "dest_instance", "src_label", "dest_label", "src_watched", "dest_watched")
HIDDEN_PACKET_COLUMNS = {"src_label", "dest_label", "src_watched", "dest_watched"}
PRUNE_EVERY = 60.0  # seconds of record time between two retention passes (a pass scans the table)


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

    Retention is off by default (Fogify keeps everything until DELETE
    /monitorings/); `max_age` (seconds) and `max_rows` bound the records table,
    enforced at most once per minute of record time, oldest rows first.
    """

    def __init__(self, path: str | Path, max_age: float | None = None, max_rows: int | None = None):
        self.path = str(path)
        self.max_age = max_age
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses at most the last rounds
        self._conn.executescript(SCHEMA)
        self._counter = self._read_counter()
        self._pruned_at: float | None = None

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
                self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('count', ?)", (count,))
                self._prune(ts)
            self._counter = count
            return count

    def _prune(self, ts: float) -> None:
        if self.max_age is None and self.max_rows is None:
            return
        if self._pruned_at is not None and ts - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = ts
        if self.max_age is not None:
            self._conn.execute("DELETE FROM records WHERE ts < ?", (ts - self.max_age,))
        if self.max_rows is not None:
            self._conn.execute(
                "DELETE FROM records WHERE id <= (SELECT id FROM records ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_rows,))

    def records(self, instance: str | None = None, from_ts: float | None = None,
                to_ts: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """Fogify's /monitorings/ answer: {instance: [{metric: float, ..., count, timestamp, ts}]} by count.

        `from_ts` and `to_ts` are strict bounds (`>`, `<`) as in Fogify;
        `instance` matches one name exactly.
        """
        where, args = _where([("instance = ?", instance), ("ts > ?", from_ts), ("ts < ?", to_ts)])
        sql = f"SELECT instance, count, ts, metrics FROM records{where} ORDER BY instance, count"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        result: dict[str, list[dict[str, Any]]] = {}
        stamps: dict[float, str] = {}  # every instance of a round shares its ts: format it once
        decode = _decoder.decode
        for name, count, ts, metrics in rows:
            record = decode(metrics)
            record["count"] = count
            stamp = stamps.get(ts)
            if stamp is None:
                stamp = stamps[ts] = rfc1123(ts)
            record["timestamp"] = stamp
            record["ts"] = ts
            result.setdefault(name, []).append(record)
        return result

    def clear_records(self) -> None:
        """Delete every record and restart the round counter at 1 (Fogify's DELETE /monitorings/)."""
        with self._lock, self._transaction():
            self._conn.execute("DELETE FROM records")
            self._conn.execute("DELETE FROM meta WHERE key = 'count'")
            self._counter = 0
            self._pruned_at = None

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

    # --- packets ----------------------------------------------------------------------------

    def add_packets(self, ts: float, rows: list[dict[str, Any]]) -> None:
        """Store one period of flow rows (see fogify_net.monitoring.flows.flow_rows) at `ts`."""
        with self._lock, self._transaction():
            self._conn.executemany(
                f"INSERT INTO packets (ts, {', '.join(PACKET_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(PACKET_COLUMNS))})",
                [(ts, *(row[column] for column in PACKET_COLUMNS)) for row in rows])

    def packets(self, service: str | None = None, from_ts: float | None = None, to_ts: float | None = None,
                protocol: str | None = None) -> list[dict[str, Any]]:
        """Fogify's /packets/ rows: a flow's period once for each monitored end, that end as `service_id`.

        Fogify sniffed inside each container, so traffic between two monitored
        instances appeared under both. `service` is a label or an instance name
        (exact); the time bounds are strict, as for records.
        """
        where, args = _where([("ts > ?", from_ts), ("ts < ?", to_ts), ("protocol = ?", protocol)])
        sql = f"SELECT id, ts, {', '.join(PACKET_COLUMNS)} FROM packets{where} ORDER BY id"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
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
        return result

    def clear_packets(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM packets")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
