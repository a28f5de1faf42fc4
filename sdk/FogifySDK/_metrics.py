"""What the API measured and recorded, and views on it: metrics, packets, annotations, plots, effect().

Metrics are cached per instance in ``data`` so repeated reads fetch only newer
records; the shapes (DataFrames, naive UTC times) come from :mod:`._frames`,
the before/during/after arithmetic of :meth:`MetricsMixin.effect` from
:mod:`._effect`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._effect import action_annotations, effect_table
from ._errors import ExceptionFogifySDK, FidelityWarning
from ._frames import (
    TimeLike,
    annotations_frame,
    fidelity_frame,
    metrics_frame,
    naive_utc,
    per_second,
    record_key,
    record_time,
    sort_records,
    to_epoch,
    to_timedelta,
)
from ._http import ANNOTATIONS_URL, FIDELITY_URL, MONITORING_URL, PACKETS_URL, HttpMixin

# fogify-net's fidelity monitor marks an episode's rounds from its start, which its checks find up to
# three sampling rounds later (a window of rounds); records this recent are fetched again
REFETCH_S = 10.0

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11; only read by type checkers


class MetricsMixin(HttpMixin):
    """Monitoring records, packets and annotations from the API, and the plots and tables built on them."""

    data: dict  # {instance: [monitoring records sorted by count]}
    annotations: pd.DataFrame  # the last get_annotations()
    fidelity_status: dict  # the last fidelity(): {fidelity, reasons, thresholds}

    # --------------------------------------------------------------- metrics

    def get_metrics(self, service: str | None = None, from_timestamp: TimeLike | None = None,
                    to_timestamp: TimeLike | None = None) -> Self:
        """Fetch monitoring records into ``self.data`` ({instance: [records sorted by count]}).

        Times may be datetimes (naive ones are UTC, like the metrics index),
        pandas Timestamps or epoch seconds; the API takes whole seconds, so the
        window is widened to them. A plain call (no filter) replaces the cache;
        filtered calls merge into it without duplicates.
        """
        params = {}
        if from_timestamp is not None:
            params["from_timestamp"] = math.floor(to_epoch(from_timestamp))
        if to_timestamp is not None:
            params["to_timestamp"] = math.ceil(to_epoch(to_timestamp))
        if service:
            params["service"] = service
        answer = self._call("GET", MONITORING_URL, params=params) or {}
        if not isinstance(answer, dict):
            raise ExceptionFogifySDK(f"The API answered {MONITORING_URL} with {type(answer).__name__}, not a mapping")
        if not params:
            self.data = {}
        for instance, records in answer.items():
            self._merge_records(instance, records or [])
        return self

    def _merge_records(self, instance: str, records: list) -> None:
        """Add `records` to the cache; one fetched again replaces the cached copy (its `fidelity` may have
        turned 0 since: an episode marks the rounds from its start, a few rounds back)."""
        fetched = {record_key(record): record for record in records}
        cached = [record for record in self.data.get(instance, []) if record_key(record) not in fetched]
        cached.extend(fetched.values())
        sort_records(cached)
        self.data[instance] = cached

    def get_metrics_from(self, service: str) -> pd.DataFrame:
        """The metrics of one instance (``label.N``) as a DataFrame.

        Index ``timestamp`` (naive UTC, sub-second when the API sends ``ts``),
        columns ``count`` and each metric, sorted by ``count``. The first call
        fetches everything; later calls fetch only newer records (and those of
        the last ``REFETCH_S`` seconds again, whose marks may have changed).

        fogify-net adds the column ``fidelity``: 1 where the emulation was
        faithful for this instance in that round, 0 where it was not; when
        any row is 0 a :class:`FidelityWarning` says so (see :meth:`fidelity`).
        """
        cached = self.data.get(service)
        if cached:
            since = record_time(cached[-1]) - pd.Timedelta(seconds=REFETCH_S)
            self.get_metrics(service=service, from_timestamp=since)
        else:
            self.get_metrics(service=service)
        frame = metrics_frame(self.data.get(service, []))
        warn_if_degraded(frame, service)
        return frame

    def clean_metrics(self) -> Any:
        """Delete all monitoring records, on the API and in the cache."""
        self.data = {}
        return self._call("DELETE", MONITORING_URL)

    def get_network_packets_from(self, service: str, from_timestamp: TimeLike | None = None,
                                 to_timestamp: TimeLike | None = None,
                                 packet_type: str | None = None) -> pd.DataFrame:
        """Traffic per flow seen by ``service`` (a label or instance) as a DataFrame (``GET /packets/``).

        Rows exist for networks with ``packet_level_monitoring``: one per flow and
        period, with ``src_instance``, ``dest_instance``, ``protocol``, ports,
        ``count`` and ``size`` (IP bytes).
        """
        params: dict = {}
        if from_timestamp is not None:
            params["from_timestamp"] = math.floor(to_epoch(from_timestamp))
        if to_timestamp is not None:
            params["to_timestamp"] = math.ceil(to_epoch(to_timestamp))
        if packet_type:
            params["packet_type"] = str(packet_type)
        params["service"] = service
        answer = self._call("GET", PACKETS_URL, params=params)
        if not isinstance(answer, dict) or "res" not in answer:
            raise ExceptionFogifySDK("The API call for packets does not response readable object", payload=answer)
        return pd.DataFrame.from_records(answer["res"])

    def fidelity(self, from_timestamp: TimeLike | None = None, to_timestamp: TimeLike | None = None,
                 instance: str | None = None) -> pd.DataFrame:
        """When and why the emulation was not faithful (fogify-net's ``GET /fidelity/``).

        One row per episode: ``start``, ``end`` (naive UTC; NaT while it lasts),
        ``duration_s``, ``check`` (host_cpu, instance_cpu, delay_late, delay_drops,
        delay_down, link_rate, sampler, scenario), ``target``, ``instances`` it
        marked degraded, ``network``, ``reason`` (e.g. ``delay line late by 3.2 ms
        p99 on wan (car.1 uplink) for 4 s``) and ``worst``. The window keeps the
        episodes that overlap it; ``instance`` those that concern it. An empty
        frame means every check held. The state now and the thresholds are in
        ``self.fidelity_status`` after the call.
        """
        params: dict[str, Any] = {}
        if from_timestamp is not None:
            params["from_timestamp"] = math.floor(to_epoch(from_timestamp))
        if to_timestamp is not None:
            params["to_timestamp"] = math.ceil(to_epoch(to_timestamp))
        if instance:
            params["instance"] = instance
        answer = self._call("GET", FIDELITY_URL, params=params)
        if not isinstance(answer, dict) or "episodes" not in answer:
            raise ExceptionFogifySDK(f"The API answered {FIDELITY_URL} without episodes", payload=answer)
        self.fidelity_status = {key: value for key, value in answer.items() if key != "episodes"}
        return fidelity_frame(answer["episodes"])

    # ----------------------------------------------------------- annotations

    def get_annotations(self) -> Self:
        """Fetch the action timeline into ``self.annotations`` (timestamp as naive UTC); returns self."""
        answer = self._call("GET", ANNOTATIONS_URL) or []
        if not isinstance(answer, list):
            raise ExceptionFogifySDK(f"The API answered {ANNOTATIONS_URL} with {type(answer).__name__}, not a list")
        self.annotations = annotations_frame(answer)
        return self

    def clean_annotations(self) -> Any:
        """Delete all annotations on the API."""
        return self._call("DELETE", ANNOTATIONS_URL)

    # ------------------------------------------------------------------ plots

    def plot(self, ax, service: str | None = None, metric: str | None = None,
             func: str | Callable[[pd.Series], pd.Series] | None = None, label: str | None = None,
             duration: dict | None = None, style: dict | None = None) -> Self:
        """Plot one metric of one instance on ``ax``.

        ``func='diff'`` plots differences (for cumulative counters), or pass any
        callable on the Series; ``duration`` may hold ``from``/``to`` times.
        """
        frame = self.get_metrics_from(service)
        if metric not in frame.columns:
            raise ExceptionFogifySDK(f"There is no metric {metric!r} for {service}")
        frame = _between(frame, (duration or {}).get("from"), (duration or {}).get("to"))
        line = frame[metric]
        if func == "diff":
            line = line.diff()
        elif callable(func):
            line = func(line)
        line.plot(ax=ax, label=label or metric, **(style or {}))
        return self

    def plot_annotations(self, ax, start: TimeLike | None = None, stop: TimeLike | None = None,
                         label: str = "annotation", colors_gist: str | list = "gist_yarg",
                         linestyle: str = "--") -> Self:
        """Draw a vertical line on ``ax`` for each annotation between ``start`` and ``stop``.

        ``colors_gist`` is a Matplotlib colormap name or a list of colours (reused
        in turn when there are more annotations than colours); ``label`` is the
        annotation column used for the legend.
        """
        from matplotlib import colormaps  # imported late: plotting is optional for most calls

        frame = self.get_annotations().annotations
        lower, upper = naive_utc(start), naive_utc(stop)
        if lower is not None:
            frame = frame[frame["timestamp"] >= lower]
        if upper is not None:
            frame = frame[frame["timestamp"] <= upper]
        count = len(frame)
        if count == 0:
            return self
        if isinstance(colors_gist, (list, tuple)):
            colors = [colors_gist[i % len(colors_gist)] for i in range(count)] if colors_gist else [None] * count
        else:
            try:
                cmap = colormaps[colors_gist].resampled(count)
            except KeyError:
                raise ExceptionFogifySDK(f"There is no Matplotlib colormap named {colors_gist!r}") from None
            colors = [cmap(i) for i in range(count)]
        for when, color, text in zip(frame["timestamp"], colors, frame[label]):
            ax.axvline(x=when, color=color, label=text, linestyle=linestyle)
        return self

    # -------------------------------------------------------------- analysis

    def effect(self, instance: str, metric: str, annotations: pd.DataFrame | None = None,
               window: float | str | timedelta = 30.0, tolerance: float = 0.1, abs_tolerance: float = 0.0,
               rate: bool = False) -> pd.DataFrame:
        """How each action changed ``metric`` of ``instance``: one row per action.

        Arguments:
          instance: ``label.N`` whose metrics to read.
          metric: a column of :meth:`get_metrics_from` (``cpu_util``, ``network_rx_<net>``, ...).
          annotations: the actions to assess, in the shape of ``self.annotations``;
            default: all actions from ``GET /annotations/`` (START/DEPLOY/STOP/UNDEPLOY
            are topology events and are left out). Pass a filtered frame to focus.
          window: seconds (or a timedelta / ``"30s"``) for the "before" period, the
            longest "during" period, and the "after" period.
          tolerance: recovery band around the before-mean, as a fraction of it.
          abs_tolerance: lower bound of that band, in the metric's unit (use it when
            the before-mean is near 0).
          rate: read a cumulative counter (bytes, CPU ns) as its per-second rate.

        Columns: timestamp, annotation, instance_name, params, mean_before,
        mean_during, mean_after, change, change_pct, median_before, median_during
        (robust to a single outlier such as a TCP retransmission), time_to_recover (seconds
        from the action until the metric is back in the band after leaving it:
        0 if it never left, NaN if it never returned). Periods: before =
        [t - window, t); during = [t, the next action or t + window, whichever is
        first); after = the window following "during".
        """
        frame = self.get_metrics_from(instance)
        if metric not in frame.columns:
            available = ", ".join(c for c in frame.columns if c != "count")
            raise ExceptionFogifySDK(f"There is no metric {metric!r} for {instance} (available: {available})")
        series = per_second(frame[metric]) if rate else frame[metric]
        if annotations is None:
            annotations = self.get_annotations().annotations
        return effect_table(series, action_annotations(annotations), to_timedelta(window),
                            tolerance=tolerance, abs_tolerance=abs_tolerance)


def warn_if_degraded(frame: pd.DataFrame, service: str) -> None:
    """A FidelityWarning when some of `frame`'s rounds were not faithful (`fidelity` 0)."""
    if "fidelity" not in frame.columns or frame.empty:
        return
    degraded = frame["fidelity"] == 0
    if degraded.any():
        first, last = frame.index[degraded.to_numpy()][[0, -1]]
        warnings.warn(FidelityWarning(
            f"{int(degraded.sum())} of {len(frame)} rounds of {service}'s metrics come from a window in which the "
            f"emulation was not faithful ({first} to {last} UTC); see FogifySDK.fidelity() for why"), stacklevel=3)


def _between(frame: pd.DataFrame, lower: TimeLike | None, upper: TimeLike | None) -> pd.DataFrame:
    lower, upper = naive_utc(lower), naive_utc(upper)
    if lower is not None:
        frame = frame[frame.index >= lower]
    if upper is not None:
        frame = frame[frame.index <= upper]
    return frame
