"""Times and DataFrames: turning the API's records into pandas objects.

One convention everywhere: times are **naive datetimes holding UTC**. That is
what Fogify's metrics index used, and what notebooks compare against
(``data[data.index > start]``), so the scenario start/stop times, annotation
times and the metrics index all share it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import pandas as pd

ANNOTATION_COLUMNS = ["timestamp", "annotation", "instance_name", "params"]
FIDELITY_COLUMNS = ["start", "end", "duration_s", "check", "target", "instances", "network", "reason", "worst"]

TimeLike = "datetime | pd.Timestamp | float | int | str"  # a type alias for hints only: what naive_utc() accepts


def utc_now() -> datetime:
    """The current time as a naive UTC datetime."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def naive_utc(value: Any) -> pd.Timestamp | None:
    """Any time a user or the API may give, as a naive UTC Timestamp.

    Accepts datetimes (naive ones are taken as UTC already), pandas
    Timestamps, epoch seconds (int/float) and strings (RFC 1123 as the API
    sends them, or ISO 8601). None and empty values give None.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isnan(value):
            return None
        return pd.Timestamp(float(value), unit="s").round("us")
    if isinstance(value, str):
        return _parse_text_time(value)
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _parse_text_time(text: str) -> pd.Timestamp:
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        stamp = pd.Timestamp(text)
    else:
        stamp = pd.Timestamp(parsed)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def to_epoch(value: Any) -> float:
    """Epoch seconds of a time given in any form :func:`naive_utc` accepts."""
    stamp = naive_utc(value)
    if stamp is None:
        raise ValueError(f"not a time: {value!r}")
    return stamp.tz_localize("UTC").timestamp()


def to_timedelta(value: Any) -> pd.Timedelta:
    """A window length: seconds as a number, or a timedelta / pandas string like ``"30s"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return pd.Timedelta(seconds=float(value))
    if isinstance(value, (timedelta, pd.Timedelta, str)):
        return pd.Timedelta(value)
    raise ValueError(f"not a duration: {value!r}")


def record_time(record: dict) -> pd.Timestamp:
    """When a monitoring or annotation record was taken.

    Records carry ``timestamp`` (RFC 1123, whole seconds, as Fogify sent it)
    and, from fogify-net, ``ts`` (float epoch seconds). ``ts`` is preferred
    because one-second resolution blurs samples taken every second.
    """
    ts = record.get("ts")
    if ts is not None:
        try:
            return pd.Timestamp(float(ts), unit="s").round("us")
        except (TypeError, ValueError):
            pass
    stamp = naive_utc(record.get("timestamp"))
    return pd.NaT if stamp is None else stamp


def record_key(record: dict) -> tuple:
    """Identity of a monitoring record, to merge incremental fetches without duplicates."""
    return record.get("count"), record.get("ts", record.get("timestamp"))


def sort_records(records: list[dict]) -> None:
    """Sort records in place by ``count`` (Fogify's order), then by time."""
    records.sort(key=lambda r: (_number(r.get("count")), record_time(r).value))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def metrics_frame(records: Iterable[dict]) -> pd.DataFrame:
    """Monitoring records of one instance as Fogify's DataFrame.

    Index ``timestamp`` (naive UTC), columns ``count`` then each metric as
    floats, rows sorted by ``count``. ``ts`` is folded into the index.
    """
    records = list(records)
    index = pd.DatetimeIndex([record_time(r) for r in records], name="timestamp")
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame({"count": []})
    frame = frame.drop(columns=[c for c in ("timestamp", "ts") if c in frame.columns])
    frame.index = index
    for column in frame.columns:
        frame[column] = _numeric(frame[column], integer=(column == "count"))
    if "count" in frame.columns:
        frame = frame[["count"] + [c for c in frame.columns if c != "count"]]
        frame = frame.sort_values(by="count", kind="stable")
    return frame


def _numeric(column: pd.Series, integer: bool) -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    if converted.isna().sum() > column.isna().sum():
        return column  # not a numeric column: keep it as the API sent it
    if integer and not converted.isna().any():
        return converted.astype("int64")
    return converted.astype("float64")


def annotations_frame(records: Iterable[dict]) -> pd.DataFrame:
    """Annotations as a DataFrame with ``timestamp`` as naive UTC datetimes.

    Columns ``timestamp, annotation, instance_name, params`` first (Fogify's),
    then anything else the server adds; ``ts`` is folded into ``timestamp``.
    Server order (the order actions happened) is kept.
    """
    records = list(records)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=ANNOTATION_COLUMNS)
    for column in ANNOTATION_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["timestamp"] = pd.to_datetime(pd.Series([record_time(r) for r in records], dtype="object"))
    if "ts" in frame.columns:
        frame = frame.drop(columns=["ts"])
    extra = [c for c in frame.columns if c not in ANNOTATION_COLUMNS]
    return frame[ANNOTATION_COLUMNS + extra]


def per_second(series: pd.Series) -> pd.Series:
    """Rate of a cumulative counter (bytes, CPU ns) per second of wall time."""
    seconds = series.index.to_series().diff().dt.total_seconds()
    return series.diff() / seconds.to_numpy()


def fidelity_frame(episodes: Iterable[dict]) -> pd.DataFrame:
    """Fidelity episodes as a DataFrame: ``start`` and ``end`` naive UTC (``end`` NaT while open),
    ``duration_s`` (up to now while open), then the API's fields; oldest first."""
    rows = []
    now = utc_now()
    for episode in episodes:
        start, end = naive_utc(episode.get("start")), naive_utc(episode.get("end"))
        duration = ((end if end is not None else now) - start).total_seconds() if start is not None else math.nan
        rows.append({**{k: episode.get(k) for k in FIDELITY_COLUMNS}, "start": start, "end": end,
                     "duration_s": duration})
    frame = pd.DataFrame(rows, columns=FIDELITY_COLUMNS)
    frame["start"] = pd.to_datetime(frame["start"])
    frame["end"] = pd.to_datetime(frame["end"])
    return frame
