"""The cloud server (NODE_TYPE=CLOUD_NODE): stores every record it gets and measures how late it is.

Records come in two ways: batches from the edges (the normal path) and small
POSTs straight from cars whose edge is unreachable (the fallback path); the
body's "source" tells them apart. Each record carries the car's send time, so
the cloud can report the end-to-end latency (clocks are shared: the emulated
containers all run on one host).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from flask import Blueprint, jsonify

from metrics import Metrics
from settings import CloudSettings, Common
from web import Role, read_payload

log = logging.getLogger(__name__)

COUNTERS = ("records_received", "batches_received", "direct_records_received", "records_from_edges")
MEANS = ("e2e_latency_ms",)


class RecordStore:
    """An append-only JSON-lines file that rotates once to `<path>.1`, so disk use stays under 2 x max_bytes."""

    def __init__(self, path: str, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def append(self, records: list[dict]) -> None:
        lines = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
        with self._lock:
            self._file.write(lines)
            self._file.flush()
            if self._file.tell() >= self.max_bytes:
                self._file.close()
                os.replace(self.path, self.path + ".1")
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        with self._lock:
            self._file.close()


def routes(store: RecordStore, metrics: Metrics) -> Blueprint:
    bp = Blueprint("cloud", __name__)

    @bp.post("/")
    def receive():
        payload = read_payload()
        records = payload["records"]
        now = time.time()
        for record in records:
            sent_at = record.get("sent_at")
            if isinstance(sent_at, (int, float)) and not isinstance(sent_at, bool):
                metrics.observe("e2e_latency_ms", (now - sent_at) * 1000)
            record["cloud_received_at"] = now
        store.append(records)
        metrics.add("records_received", len(records))
        if payload.get("source") == "edge":
            metrics.add("batches_received")
            metrics.add("records_from_edges", len(records))
        else:
            metrics.add("direct_records_received", len(records))
        return jsonify({"accepted": len(records)})

    return bp


def build(common: Common) -> Role:
    settings = CloudSettings.from_env()
    metrics = Metrics(COUNTERS, MEANS)
    store = RecordStore(settings.store_file, settings.store_max_bytes)
    log.info("cloud %s: storing records in %s", common.instance, settings.store_file)
    return Role(metrics=metrics, blueprint=routes(store, metrics))
