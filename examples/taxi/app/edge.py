"""The edge server (NODE_TYPE=EDGE_NODE): collects its region's records, forwards them in batches.

Cars talk to the edge over the fast regional network; the edge talks to the
cloud over the slow internet every FORWARD_INTERVAL seconds, in POSTs of at
most FORWARD_BATCH_MAX records. When the cloud is unreachable the batch goes
back to the front of the backlog and waits for the next interval. The backlog
is capped (BACKLOG_MAX): past it the oldest records are dropped and counted,
so a long outage costs data, never the edge's memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import requests
from flask import Blueprint, jsonify

from metrics import Metrics
from settings import Common, EdgeSettings
from web import Role, read_payload

log = logging.getLogger(__name__)

COUNTERS = (
    "records_received", "records_forwarded", "batches_forwarded", "forward_errors", "records_dropped",
)


class Backlog:
    """Records waiting for the cloud, oldest first, at most `limit` of them (in flight included)."""

    def __init__(self, limit: int, metrics: Metrics):
        self.limit = limit
        self.metrics = metrics
        self._queue: deque[dict] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def add(self, records: list[dict]) -> None:
        with self._lock:
            self._queue.extend(records)
            self._trim()

    def take(self, n: int) -> list[dict]:
        """Up to n of the oldest records; they count as backlog until done() or put_back()."""
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(n, len(self._queue)))]
            self._in_flight = len(batch)
            return batch

    def done(self) -> None:
        with self._lock:
            self._in_flight = 0

    def put_back(self, batch: list[dict]) -> None:
        """Return an unsent batch to the front, where it was, then enforce the cap."""
        with self._lock:
            self._in_flight = 0
            self._queue.extendleft(reversed(batch))
            self._trim()

    def _trim(self) -> None:
        excess = len(self._queue) + self._in_flight - self.limit
        if excess > 0:
            excess = min(excess, len(self._queue))
            for _ in range(excess):
                self._queue.popleft()
            self.metrics.add("records_dropped", excess)


class Forwarder:
    """Every interval, sends the backlog to the cloud in batches; stops at the first failure."""

    def __init__(self, common: Common, settings: EdgeSettings, backlog: Backlog, metrics: Metrics):
        self.instance = common.instance
        self.settings = settings
        self.backlog = backlog
        self.metrics = metrics
        self.session = requests.Session()
        self._failing = False

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.forward_interval):
            self.forward()
        self.forward()  # one last attempt, so a clean stop loses nothing the cloud can take

    def forward(self) -> int:
        """Drain the backlog as far as the cloud accepts it; return the records sent."""
        sent = 0
        # Bounded: enough batches for a full backlog, not "while records keep arriving".
        for _ in range(self.settings.backlog_max // self.settings.forward_batch_max + 1):
            batch = self.backlog.take(self.settings.forward_batch_max)
            if not batch:
                break
            if not self._post(batch):
                self.backlog.put_back(batch)
                break
            self.backlog.done()
            sent += len(batch)
        return sent

    def _post(self, batch: list[dict]) -> bool:
        payload = {"source": "edge", "sender": self.instance, "region": self.settings.region, "records": batch}
        started = time.monotonic()
        timeout = self.settings.forward_timeout
        try:
            response = self.session.post(self.settings.cloud_url, json=payload, timeout=(timeout, timeout))
            response.raise_for_status()
        except requests.RequestException as exc:
            self.metrics.add("forward_errors")
            if not self._failing:
                log.warning("forward to %s failed, keeping %d records: %s", self.settings.cloud_url, len(batch), exc)
            self._failing = True
            return False
        # The latest forward's round trip, held until the next one: forwards are ~10 s apart.
        self.metrics.set("forward_latency_ms", round((time.monotonic() - started) * 1000, 3))
        self.metrics.add("records_forwarded", len(batch))
        self.metrics.add("batches_forwarded")
        if self._failing:
            log.info("forward to %s works again", self.settings.cloud_url)
        self._failing = False
        return True


def routes(common: Common, settings: EdgeSettings, backlog: Backlog, metrics: Metrics) -> Blueprint:
    bp = Blueprint("edge", __name__)

    @bp.post("/")
    def receive():
        records = read_payload()["records"]
        now = time.time()
        for record in records:
            record["edge"] = common.instance
            record["region"] = settings.region
            record["edge_received_at"] = now
        backlog.add(records)
        metrics.add("records_received", len(records))
        return jsonify({"accepted": len(records)})

    return bp


def build(common: Common) -> Role:
    settings = EdgeSettings.from_env()
    metrics = Metrics(COUNTERS)
    backlog = Backlog(settings.backlog_max, metrics)
    metrics.gauge("backlog", backlog.__len__)
    forwarder = Forwarder(common, settings, backlog, metrics)
    log.info(
        "edge %s (%s): forwarding to %s every %gs",
        common.instance, settings.region, settings.cloud_url, settings.forward_interval,
    )
    return Role(
        metrics=metrics,
        blueprint=routes(common, settings, backlog, metrics),
        workers=[forwarder.run],
        identity={"region": settings.region},
    )
