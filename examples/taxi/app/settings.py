"""Every environment variable the taxi app reads, in one place.

One image plays all three roles (car, edge server, cloud server), so the role
and its knobs come from the environment: the compose file sets them for the
emulated topology, and the local smoke test sets them to loopback ports.
A bad value stops the app at start with a message naming the variable,
rather than failing minutes into an experiment.
"""

from __future__ import annotations

import os
import socket
import zlib
from dataclasses import dataclass

ROLES = ("IOT_NODE", "EDGE_NODE", "CLOUD_NODE")

DEFAULT_EDGE_URLS = "http://tasks.mec-svc-1.edge-net-1:8000/,http://tasks.mec-svc-2.edge-net-2:8000/"
DEFAULT_CLOUD_URL = "http://tasks.cloud-server.internet:8000/"


class SettingsError(ValueError):
    """A missing or malformed environment variable; the message names it."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {raw!r}")
    return value


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {raw!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def env_urls(name: str, default: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in env_str(name, default).split(",") if part.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{name}: {url!r} is not an http(s) URL")
    return urls


@dataclass(frozen=True)
class Common:
    """What every role needs: who it is, where it listens, where its metrics go."""

    role: str
    instance: str  # FOGIFY_INSTANCE, e.g. car-workload-1.2
    listen_host: str
    port: int
    metrics_file: str
    metrics_interval: float  # seconds between metrics file refreshes

    @classmethod
    def from_env(cls) -> Common:
        role = env_str("NODE_TYPE", "").upper()
        if role not in ROLES:
            raise SettingsError(f"NODE_TYPE: expected one of {', '.join(ROLES)}, got {role or 'nothing'!r}")
        return cls(
            role=role,
            instance=env_str("FOGIFY_INSTANCE", socket.gethostname()),
            listen_host=env_str("LISTEN_HOST", "0.0.0.0"),
            port=env_int("PORT", 8000, minimum=1),
            metrics_file=env_str("FOGIFY_METRICS_FILE", "/fogify/metrics"),
            metrics_interval=env_float("METRICS_INTERVAL", 1.0, minimum=0.05),
        )


@dataclass(frozen=True)
class CarSettings:
    trips_file: str
    records_per_second: float
    records_per_post: int
    edge_urls: tuple[str, ...]  # candidates; the first whose host name resolves is this car's edge
    cloud_url: str
    request_timeout: float  # seconds, connect and read
    edge_retry_after: float  # seconds to go straight to the cloud after the edge failed
    loop_trips: bool  # start the file again at its end
    start_row: int  # rows to skip first, so replicas do not all send the same trips

    @classmethod
    def from_env(cls, instance: str) -> CarSettings:
        cloud = env_urls("CLOUD_URL", DEFAULT_CLOUD_URL)
        if len(cloud) != 1:
            raise SettingsError("CLOUD_URL: expected one URL")
        rate = env_float("RECORDS_PER_SECOND", 10.0)
        if rate <= 0:
            raise SettingsError("RECORDS_PER_SECOND: must be positive")
        return cls(
            trips_file=env_str("TRIPS_FILE", "/data/yellow_tripdata_2018-01.csv"),
            records_per_second=rate,
            records_per_post=env_int("RECORDS_PER_POST", 2, minimum=1),
            edge_urls=env_urls("EDGE_URLS", DEFAULT_EDGE_URLS),
            cloud_url=cloud[0],
            request_timeout=env_float("REQUEST_TIMEOUT", 2.0, minimum=0.1),
            edge_retry_after=env_float("EDGE_RETRY_AFTER", 5.0, minimum=0.0),
            loop_trips=env_bool("LOOP_TRIPS", True),
            # A stable per-instance offset: crc32, not hash(), which is salted per process.
            start_row=env_int("START_ROW", zlib.crc32(instance.encode()) % 5000, minimum=0),
        )


@dataclass(frozen=True)
class EdgeSettings:
    region: str
    cloud_url: str
    forward_interval: float  # seconds between forwards to the cloud
    forward_timeout: float  # seconds, per batch POST
    forward_batch_max: int  # records per POST; a long backlog goes in several POSTs
    backlog_max: int  # records kept while the cloud is unreachable; older ones are dropped

    @classmethod
    def from_env(cls) -> EdgeSettings:
        cloud = env_urls("CLOUD_URL", DEFAULT_CLOUD_URL)
        if len(cloud) != 1:
            raise SettingsError("CLOUD_URL: expected one URL")
        return cls(
            region=env_str("REGION", "unknown"),
            cloud_url=cloud[0],
            forward_interval=env_float("FORWARD_INTERVAL", 10.0, minimum=0.05),
            forward_timeout=env_float("FORWARD_TIMEOUT", 5.0, minimum=0.1),
            forward_batch_max=env_int("FORWARD_BATCH_MAX", 1000, minimum=1),
            backlog_max=env_int("BACKLOG_MAX", 50000, minimum=1),
        )


@dataclass(frozen=True)
class CloudSettings:
    store_file: str
    store_max_bytes: int  # the file rotates once to <file>.1 beyond this, so disk use stays under twice it

    @classmethod
    def from_env(cls) -> CloudSettings:
        return cls(
            store_file=env_str("STORE_FILE", "/tmp/taxi-cloud/records.jsonl"),
            store_max_bytes=env_int("STORE_MAX_BYTES", 64 * 1024 * 1024, minimum=1024),
        )
