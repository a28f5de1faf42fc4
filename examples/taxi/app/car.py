"""The car (NODE_TYPE=IOT_NODE): streams trip records to its regional edge, or to the cloud.

A car does not know its region. It is attached to one regional network, and
the emulator writes into its /etc/hosts only the names of the networks it is
on, so the first edge candidate whose name resolves is its own edge. It looks
again every second: a car the emulator moves to another region's network
(a `move` action, a scenario's route) finds that region's edge by itself.

Sending is paced (RECORDS_PER_SECOND, in POSTs of RECORDS_PER_POST records)
and bounded: a batch tries the edge once and then the cloud once, and is
dropped (and counted) when both fail. After an edge failure the car sends
straight to the cloud for EDGE_RETRY_AFTER seconds instead of paying a timeout
on every batch, then tries the edge again.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

from metrics import Metrics
from settings import CarSettings, Common
from web import Role

log = logging.getLogger(__name__)

COUNTERS = ("records_sent", "records_to_edge", "records_to_cloud", "send_errors", "records_dropped")
MEANS = ("send_latency_ms",)

INT_FIELDS = {"VendorID", "passenger_count", "RatecodeID", "PULocationID", "DOLocationID", "payment_type"}
FLOAT_FIELDS = {
    "trip_distance", "fare_amount", "extra", "mta_tax", "tip_amount",
    "tolls_amount", "improvement_surcharge", "total_amount",
}
RESOLVE_EVERY_SECONDS = 1.0  # how often the car looks up which edge name resolves (it may have moved)


def parse_trip(row: dict) -> dict:
    """A CSV row as a JSON-friendly record with numbers typed; odd values stay strings."""
    record = {}
    for key, value in row.items():
        if key is None:  # surplus columns of a malformed line
            continue
        kind = int if key in INT_FIELDS else float if key in FLOAT_FIELDS else None
        if kind is not None and value not in (None, ""):
            with contextlib.suppress(ValueError):
                value = kind(value)
        record[key] = value
    return record


class TripSource:
    """Trip records read lazily from a TLC-like CSV, from `start_row`, wrapping at the end if `loop`.

    Lazy so that a real 0.8 GB TLC file works as well as the generated one.
    """

    def __init__(self, path: str, start_row: int = 0, loop: bool = True):
        self.path = path
        self._rows = self._iterate(start_row, loop)

    def take(self, n: int) -> list[dict]:
        """Up to n records; fewer (or none) only when the file is used up and not looping."""
        batch = []
        for row in self._rows:
            batch.append(parse_trip(row))
            if len(batch) == n:
                break
        return batch

    def _iterate(self, skip: int, loop: bool) -> Iterator[dict]:
        while True:
            count = 0
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    count += 1
                    if count > skip:
                        yield row
            if count == 0 or not loop:
                return
            skip = skip % count if skip >= count else 0  # a skip beyond the end wraps around


def first_resolving(urls: tuple[str, ...]) -> str | None:
    """The first URL whose host name resolves here, or None."""
    for url in urls:
        parts = urlsplit(url)
        try:
            socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, TypeError):
            log.debug("%s does not resolve here", parts.hostname)
            continue
        return url
    return None


class Car:
    """Paces trip records out to the edge or the cloud and counts what happened to them."""

    def __init__(self, common: Common, settings: CarSettings, metrics: Metrics, source: TripSource):
        self.instance = common.instance
        self.settings = settings
        self.metrics = metrics
        self.source = source
        self.session = requests.Session()
        self._edge: str | None = None
        self._resolved = False
        self._next_resolve = 0.0
        self._edge_down_until = 0.0
        self._failing: set[str] = set()  # targets whose last request failed, to log changes only

    def run(self, stop: threading.Event) -> None:
        interval = self.settings.records_per_post / self.settings.records_per_second
        log.info(
            "car %s: %.3g records/s in POSTs of %d, trips from %s",
            self.instance, self.settings.records_per_second, self.settings.records_per_post, self.source.path,
        )
        next_at = time.monotonic()
        while not stop.is_set():
            batch = self.source.take(self.settings.records_per_post)
            if not batch:
                log.info("no more trips in %s; idle until stopped", self.source.path)
                stop.wait()
                return
            self.send(batch)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -interval:  # far behind (timeouts): restart the pace rather than burst
                next_at = time.monotonic()
            elif delay > 0:
                stop.wait(delay)

    def send(self, batch: list[dict]) -> bool:
        """Edge once (unless it recently failed), else cloud once; False if the batch was dropped."""
        stamp = time.time()  # one send time per batch, kept across the fallback: e2e includes its cost
        for record in batch:
            record["car"] = self.instance
            record["sent_at"] = stamp
        payload = {"source": "car", "sender": self.instance, "records": batch}
        edge = self.edge_url()
        if edge is not None and time.monotonic() >= self._edge_down_until:
            if self._post(edge, payload):
                self._count_sent(len(batch), "records_to_edge")
                return True
            self._edge_down_until = time.monotonic() + self.settings.edge_retry_after
            self._next_resolve = 0.0  # the edge failed: perhaps the car left its region
        if self._post(self.settings.cloud_url, payload):
            self._count_sent(len(batch), "records_to_cloud")
            return True
        self.metrics.add("records_dropped", len(batch))
        return False

    def edge_url(self) -> str | None:
        """The edge of the region the car is in now: the first candidate whose name resolves here.

        A different answer than before means the car changed networks: the new
        edge is tried at once, even if the old one just failed.
        """
        if time.monotonic() >= self._next_resolve:
            self._next_resolve = time.monotonic() + RESOLVE_EVERY_SECONDS
            edge = first_resolving(self.settings.edge_urls)
            if edge != self._edge or not self._resolved:
                if edge is None:
                    log.warning("no edge name resolves (%s); sending to the cloud",
                                ", ".join(self.settings.edge_urls))
                else:
                    log.info("edge: %s", edge)
                    self._edge_down_until = 0.0
                self._edge, self._resolved = edge, True
        return self._edge

    def _count_sent(self, n: int, route: str) -> None:
        self.metrics.add("records_sent", n)
        self.metrics.add(route, n)

    def _post(self, url: str, payload: dict) -> bool:
        started = time.monotonic()
        timeout = self.settings.request_timeout
        try:
            response = self.session.post(url, json=payload, timeout=(timeout, timeout))
            response.raise_for_status()
        except requests.RequestException as exc:
            self.metrics.add("send_errors")
            if url not in self._failing:
                log.warning("POST %s failed: %s", url, exc)
                self._failing.add(url)
            return False
        self.metrics.observe("send_latency_ms", (time.monotonic() - started) * 1000)
        if url in self._failing:
            log.info("POST %s works again", url)
            self._failing.discard(url)
        return True


def build(common: Common) -> Role:
    """The car's sending loop; over HTTP the car serves only /health and /stats."""
    settings = CarSettings.from_env(common.instance)
    with open(settings.trips_file):  # fail at start, with a clear error, if the file is missing
        pass
    metrics = Metrics(COUNTERS, MEANS)
    car = Car(common, settings, metrics, TripSource(settings.trips_file, settings.start_row, settings.loop_trips))
    return Role(metrics=metrics, workers=[car.run])
