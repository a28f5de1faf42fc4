"""What did an action do to a metric? Before/during/after summaries, pure pandas."""

from __future__ import annotations

import math

import pandas as pd

from ._frames import naive_utc

# Annotations that mark the topology's life or state, not an action on it.
LIFECYCLE_ANNOTATIONS = frozenset({"START", "DEPLOY", "STOP", "UNDEPLOY", "DEGRADED", "RECOVERED",
                                   "FIDELITY_START", "FIDELITY_END"})

EFFECT_COLUMNS = [
    "timestamp", "annotation", "instance_name", "params",
    "mean_before", "mean_during", "mean_after", "change", "change_pct", "time_to_recover",
    "median_before", "median_during",
]


def action_annotations(annotations: pd.DataFrame) -> pd.DataFrame:
    """Only the actions among ``annotations``, with naive UTC times, oldest first."""
    if annotations is None or len(annotations) == 0:
        return pd.DataFrame(columns=["timestamp", "annotation", "instance_name", "params"])
    frame = annotations.copy()
    frame["timestamp"] = [naive_utc(value) for value in frame["timestamp"]]
    kinds = frame["annotation"].astype(str).str.upper()
    frame = frame[~kinds.isin(LIFECYCLE_ANNOTATIONS) & frame["timestamp"].notna()]
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def effect_table(series: pd.Series, actions: pd.DataFrame, window: pd.Timedelta,
                 tolerance: float = 0.1, abs_tolerance: float = 0.0) -> pd.DataFrame:
    """One row per action: the metric's mean before, during and after it, and its recovery.

    For an action at time t:
      - before = [t - window, t)
      - during = [t, end) where end is the next (later) action or t + window, whichever is first
      - after  = [end, end + window)
      - change = mean_during - mean_before, change_pct = 100 * change / |mean_before|
      - median_before, median_during: the same periods' medians, which one outlier
        (a TCP retransmission on a lossy link, a CPU-starved second) cannot move
      - time_to_recover: seconds from t until the metric, having left the band
        mean_before ± max(tolerance * |mean_before|, abs_tolerance), is first back
        inside it (searching to the end of the data); 0 if it never left the band,
        NaN if it never came back or there is no "before" data.
    """
    series = series.dropna().sort_index()
    actions = actions.sort_values("timestamp", kind="stable")
    times = list(actions["timestamp"])
    rows = []
    for position, action in enumerate(actions.to_dict("records")):
        start = action["timestamp"]
        later = [t for t in times[position + 1:] if t > start]
        end = min([start + window] + later[:1])
        before = _mean(series, start - window, start)
        during = _mean(series, start, end)
        after = _mean(series, end, end + window)
        change = during - before
        rows.append({
            "timestamp": start,
            "annotation": action.get("annotation"),
            "instance_name": action.get("instance_name"),
            "params": action.get("params"),
            "mean_before": before,
            "mean_during": during,
            "mean_after": after,
            "change": change,
            "change_pct": 100.0 * change / abs(before) if before and not math.isnan(before) else math.nan,
            "time_to_recover": recovery_seconds(series, start, before, _band(before, tolerance, abs_tolerance)),
            "median_before": _median(series, start - window, start),
            "median_during": _median(series, start, end),
        })
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _mean(series: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> float:
    values = _between(series, start, end)
    return float(values.mean()) if len(values) else math.nan


def _median(series: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> float:
    values = _between(series, start, end)
    return float(values.median()) if len(values) else math.nan


def _between(series: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return series[(series.index >= start) & (series.index < end)]


def _band(mean: float, tolerance: float, abs_tolerance: float) -> float:
    if math.isnan(mean):
        return math.nan
    return max(tolerance * abs(mean), abs_tolerance)


def recovery_seconds(series: pd.Series, start: pd.Timestamp, mean: float, band: float) -> float:
    """Seconds from ``start`` until ``series`` returns within ``mean ± band`` after leaving it."""
    if math.isnan(mean) or math.isnan(band):
        return math.nan
    samples = series[series.index >= start]
    outside = (samples - mean).abs() > band
    if not outside.any():
        return 0.0
    onset = outside.idxmax()  # first True
    later = samples[samples.index > onset]
    back = later[(later - mean).abs() <= band]
    if back.empty:
        return math.nan
    return (back.index[0] - start).total_seconds()
