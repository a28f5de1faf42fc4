"""Traces: link properties that follow a time series instead of constants.

A trace is written where the constants are (a network, a blueprint's network
entry, a links rule) as `trace: <file>`, a mapping, or a list of mappings (one
per direction):

    trace:
      file: traces/lte.csv        # or points: [...] inline, or mahimahi: [ms, ...] inline
      format: csv                 # csv or mahimahi; by default .csv is CSV, a file of bare integers Mahimahi
      direction: bidirectional    # what the values describe: the path (split per direction) or uplink/downlink
      mode: step                  # step (hold each row) or linear (interpolate between rows)
      resolution: 100ms           # how often the link changes at most
      loop: true                  # or false: play once, then keep the last values
      duration: 60s               # one pass; default: the last row's time plus the gap before it
      start: deploy               # or action: wait for a `trace` action (a scenario's)
      name: lte                   # default: where it is written (network, label@network, from-to@network)

CSV: a header naming `time_s` and any of `bandwidth`, `delay`, `jitter`,
`loss`, then one row per point. Cells may carry units (`10Mbps`, `20ms`,
`1%`); bare numbers are Mbit/s, milliseconds and percent. An empty cell leaves
that property as it was. `#` starts a comment line.

Mahimahi (packet-delivery traces, as `mm-link` reads them): one integer per
line, the millisecond at which one 1500-byte packet may leave; a millisecond
repeated is several packets. The last timestamp is the period. It becomes a
rate series with one value per `resolution` bin: packets x 1514 bytes (the
frame of a 1500-byte packet) per bin, so the link delivers what Mahimahi
would.

Parsing only reads the files the model names (through a TraceFiles, which
knows the model's folder or the files uploaded with it), so it stays pure.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ModelError, join
from .fields import boolean, known_keys, mapping, valid_name
from .limits import (
    MAX_OPPORTUNITIES,
    MAX_POINTS,
    MAX_RESOLUTION,
    MAX_STEPS,
    MAX_TRACE_BYTES,
    MAX_TRACE_SECONDS,
    MIN_RESOLUTION,
)
from .schema import TRACE_DIRECTIONS, TRACE_MODES, QoSPatch, Trace, TracePoint, TraceSpec
from .units import MAX_DELAY, MAX_RATE, parse_delay, parse_duration, parse_percent, parse_rate, parse_seconds

DEFAULT_RESOLUTION = 0.1  # seconds
FLOOR_RATE = 8_000  # bit/s: a rate of 0 (an outage) becomes this; HTB cannot hold a rate of zero
MAHIMAHI_PACKET = 1500  # bytes of IP packet per delivery opportunity
FRAME_OVERHEAD = 14  # Ethernet header: the shaper counts frames
COLUMNS = ("time_s", "bandwidth", "delay", "jitter", "loss")
_ZERO_WITH_UNIT = re.compile(r"^\s*0*\.?0*\s*[A-Za-z]+\s*$")
_SPEC_KEYS = {"file", "points", "mahimahi", "format", "direction", "mode", "resolution", "loop", "duration",
              "start", "name"}


@dataclass
class TraceFiles:
    """Where `file:` names are read: files uploaded with the model first, then the model's folder.

    An API deployment has no folder: the SDK and the CLI upload the files a
    model names next to it. Without either, a file reference is an error.
    """

    base_dir: Path | None = None
    uploaded: dict[str, bytes] = field(default_factory=dict)

    def read(self, name: str, path: str) -> bytes:
        key = str(PurePosixPath(name))
        for candidate in (name, key, key.removeprefix("./")):
            if candidate in self.uploaded:
                return self.uploaded[candidate]
        if self.base_dir is None:
            raise ModelError(path, f"trace file {name!r} was not uploaded with the model (the SDK and "
                                   f"`fogify-net deploy` upload the files a model names; with curl add "
                                   f"-F traces=@{name})")
        file = Path(name).expanduser()
        file = file if file.is_absolute() else self.base_dir / file
        try:
            if file.stat().st_size > MAX_TRACE_BYTES:
                raise ModelError(path, f"trace file {name!r} is larger than {MAX_TRACE_BYTES // 2**20} MiB")
            return file.read_bytes()
        except OSError as error:
            raise ModelError(path, f"cannot read trace file {name!r}: {error.strerror}") from None


def parse_traces(raw: Any, path: str, default_name: str, files: TraceFiles | None) -> tuple[TraceSpec, ...]:
    """The `trace` key: a file name, a mapping, or a list of mappings (one per direction)."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ModelError(path, "an empty list of traces")
    specs = []
    for i, item in enumerate(items):
        item_path = join(path, i) if isinstance(raw, list) else path
        if isinstance(item, str):
            item = {"file": item}
        specs.append(parse_trace_spec(item, item_path, default_name, files))
    directions = [s.direction for s in specs]
    if len(set(directions)) != len(directions) or ("bidirectional" in directions and len(directions) > 1):
        raise ModelError(path, f"traces overlap: directions {', '.join(directions)} (give bidirectional alone, "
                               "or uplink and downlink once each)")
    return tuple(specs)


def parse_trace_spec(raw: Any, path: str, default_name: str, files: TraceFiles | None,
                     allow_files: bool = True) -> TraceSpec:
    """One trace mapping (see the module docstring)."""
    raw = mapping(raw, path, "a trace")
    known_keys(raw, path, _SPEC_KEYS)
    sources = [key for key in ("file", "points", "mahimahi") if raw.get(key) is not None]
    if len(sources) != 1:
        raise ModelError(path, "give exactly one of file, points or mahimahi")
    direction = str(raw.get("direction", "bidirectional"))
    if direction not in TRACE_DIRECTIONS:
        raise ModelError(join(path, "direction"),
                         f"unknown direction {direction!r} (use {', '.join(TRACE_DIRECTIONS)})")
    mode = str(raw.get("mode", "step"))
    if mode not in TRACE_MODES:
        raise ModelError(join(path, "mode"), f"unknown mode {mode!r} (use {', '.join(TRACE_MODES)})")
    resolution = DEFAULT_RESOLUTION
    if raw.get("resolution") is not None:
        resolution = parse_duration(raw["resolution"], join(path, "resolution"))
        if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise ModelError(join(path, "resolution"), f"must be between {MIN_RESOLUTION * 1000:g}ms and 1 hour")
    loop = boolean(raw.get("loop", True), join(path, "loop"))
    start = str(raw.get("start", "deploy"))
    if start not in ("deploy", "action"):
        raise ModelError(join(path, "start"), f"unknown start {start!r} (use deploy or action)")
    name = default_name if direction == "bidirectional" else f"{default_name}/{direction}"
    if raw.get("name") is not None:
        name = valid_name(raw["name"], join(path, "name"))

    fmt = raw.get("format")
    if fmt is not None and fmt not in ("csv", "mahimahi"):
        raise ModelError(join(path, "format"), f"unknown format {fmt!r} (use csv or mahimahi)")
    source = raw["file"] if sources[0] == "file" else "inline"
    points, period = _read_points(raw, sources[0], fmt, path, resolution, files, allow_files)
    if period is not None and mode == "linear":
        raise ModelError(join(path, "mode"), "a Mahimahi trace is a rate per bin: use mode step")
    duration = period if period is not None else default_period(points, resolution)
    if raw.get("duration") is not None:
        duration = parse_seconds(raw["duration"], join(path, "duration"))
        if duration <= points[-1].time:
            raise ModelError(join(path, "duration"),
                             f"must be longer than the last point's time ({points[-1].time:g}s)")
    if duration > MAX_TRACE_SECONDS:
        raise ModelError(path, f"one pass lasts {duration:g} s; at most {MAX_TRACE_SECONDS} s (a week)")
    if mode == "linear" and duration / resolution > MAX_STEPS:
        raise ModelError(join(path, "resolution"), f"{duration:g} s at {resolution * 1000:g} ms is more than "
                                                   f"{MAX_STEPS} steps a pass: use a coarser resolution")
    trace = Trace(points=points, duration=duration, mode=mode, resolution=resolution, loop=loop, source=source)
    return TraceSpec(name=name, trace=trace, direction=direction, autostart=start == "deploy")


def _read_points(raw: dict, source: str, fmt: str | None, path: str, resolution: float,
                 files: TraceFiles | None, allow_files: bool) -> tuple[tuple[TracePoint, ...], float | None]:
    """The points of a trace and, for a Mahimahi trace, its period (else None)."""
    if source == "points":
        return parse_points(raw["points"], join(path, "points")), None
    if source == "mahimahi":
        stamps = raw["mahimahi"]
        if not isinstance(stamps, list):
            raise ModelError(join(path, "mahimahi"), "expected a list of millisecond timestamps")
        return mahimahi_points(_mahimahi_list(stamps, join(path, "mahimahi")), resolution, path)
    file_path = join(path, "file")
    if not allow_files:
        raise ModelError(file_path, "an action cannot name a file; send the points inline")
    name = raw["file"]
    if not isinstance(name, str) or not name.strip():
        raise ModelError(file_path, "expected a file name")
    data = (files or TraceFiles()).read(name, file_path)
    if len(data) > MAX_TRACE_BYTES:
        raise ModelError(file_path, f"trace file {name!r} is larger than {MAX_TRACE_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(file_path, f"trace file {name!r} is not UTF-8 text") from None
    where = f"{file_path} ({name})"
    if (fmt or guess_format(name, text)) == "csv":
        return parse_csv(text, where), None
    return mahimahi_points(parse_mahimahi(text, where), resolution, where)


def guess_format(name: str, text: str) -> str:
    """CSV by its suffix; otherwise a first data line that is a bare integer means Mahimahi."""
    if name.lower().endswith(".csv"):
        return "csv"
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return "mahimahi" if line.isdigit() else "csv"
    return "csv"


def default_period(points: tuple[TracePoint, ...], resolution: float) -> float:
    """One pass: the last point's time plus the gap before it (one resolution for a single point)."""
    last = points[-1].time
    gap = last - points[-2].time if len(points) > 1 else resolution
    return last + max(gap, resolution)


# --- CSV and inline points -------------------------------------------------------------------


def parse_csv(text: str, path: str) -> tuple[TracePoint, ...]:
    """Rows of `time_s, bandwidth, delay, jitter, loss` (any subset of the last four)."""
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ModelError(path, "the trace is empty")
    if len(lines) - 1 > MAX_POINTS:
        raise ModelError(path, f"more than {MAX_POINTS} rows")
    rows = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    header = [cell.strip().lower() for cell in next(rows)]
    header_path = f"{path} line {lines[0][0]}"
    for column in header:
        if column not in COLUMNS:
            raise ModelError(header_path, f"unknown column {column!r} (use {', '.join(COLUMNS)})")
    if "time_s" not in header:
        raise ModelError(header_path, "the header has no time_s column")
    if len(header) < 2:
        raise ModelError(header_path, "the header names no property (bandwidth, delay, jitter, loss)")
    if len(set(header)) != len(header):
        raise ModelError(header_path, "a column is named twice")
    points = []
    for (number, _), cells in zip(lines[1:], rows):
        row_path = f"{path} line {number}"
        if len(cells) > len(header):
            raise ModelError(row_path, f"{len(cells)} cells for {len(header)} columns")
        row = dict(zip(header, (cell.strip() for cell in cells)))
        points.append(_point(row, row_path))
    return _checked(points, path)


def parse_points(raw: Any, path: str) -> tuple[TracePoint, ...]:
    """Inline points: a list of mappings with the CSV's columns as keys."""
    if not isinstance(raw, list) or not raw:
        raise ModelError(path, "expected a non-empty list of points ({time_s, bandwidth, delay, jitter, loss})")
    if len(raw) > MAX_POINTS:
        raise ModelError(path, f"more than {MAX_POINTS} points")
    points = []
    for i, item in enumerate(raw):
        item_path = join(path, i)
        item = mapping(item, item_path, "a point")
        known_keys(item, item_path, set(COLUMNS))
        points.append(_point({k: "" if v is None else v for k, v in item.items()}, item_path))
    return _checked(points, path)


def _point(row: dict[str, Any], path: str) -> TracePoint:
    if row.get("time_s") in (None, ""):
        raise ModelError(join(path, "time_s"), "missing")
    time = parse_seconds(row["time_s"], join(path, "time_s"))
    if time > MAX_TRACE_SECONDS:
        raise ModelError(join(path, "time_s"), f"{time:g} s is beyond a week")
    values: dict[str, Any] = {}
    for column, key, parse in (("bandwidth", "rate", _trace_rate), ("delay", "delay", _trace_duration),
                               ("jitter", "jitter", _trace_duration), ("loss", "loss", parse_percent)):
        if row.get(column) not in (None, ""):
            values[key] = parse(row[column], join(path, column))
    return TracePoint(time=time, values=QoSPatch(**values))


def _bare(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _trace_rate(value: Any, path: str) -> int:
    """A rate with a unit, or a bare number of Mbit/s; 0 is an outage (the floor rate)."""
    if _bare(value):
        number = float(value)
        if not math.isfinite(number) or number < 0 or number * 1e6 > MAX_RATE:
            raise ModelError(path, f"invalid bandwidth {value!r} (Mbit/s, at most {MAX_RATE // 10**6})")
        return max(FLOOR_RATE, round(number * 1e6))
    if _ZERO_WITH_UNIT.match(str(value)):
        return FLOOR_RATE
    return max(FLOOR_RATE, parse_rate(value, path))


def _trace_duration(value: Any, path: str) -> float:
    """A duration with a unit, or a bare number of milliseconds."""
    if _bare(value):
        number = float(value)
        if not math.isfinite(number) or number < 0 or number / 1000 > MAX_DELAY:
            raise ModelError(path, f"invalid duration {value!r} (milliseconds, at most {MAX_DELAY * 1000:g})")
        return number / 1000
    return parse_delay(value, path)


def _checked(points: list[TracePoint], path: str) -> tuple[TracePoint, ...]:
    if not points:
        raise ModelError(path, "the trace has no points")
    for before, after in zip(points, points[1:]):
        if after.time <= before.time:
            raise ModelError(path, f"time_s must increase ({after.time:g} after {before.time:g})")
    if not any(p.values for p in points):
        raise ModelError(path, "no point gives a value")
    return tuple(points)


# --- Mahimahi ----------------------------------------------------------------------------------


def parse_mahimahi(text: str, path: str) -> list[int]:
    """The delivery opportunities of a Mahimahi trace, in milliseconds, non-decreasing."""
    stamps = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.isdigit():
            raise ModelError(f"{path} line {number}", f"expected a whole number of milliseconds, got {line[:40]!r}")
        stamps.append(int(line))
        if len(stamps) > MAX_OPPORTUNITIES:
            raise ModelError(path, f"more than {MAX_OPPORTUNITIES} delivery opportunities")
    return _checked_stamps(stamps, path)


def _mahimahi_list(raw: list, path: str) -> list[int]:
    if len(raw) > MAX_OPPORTUNITIES:
        raise ModelError(path, f"more than {MAX_OPPORTUNITIES} delivery opportunities")
    stamps = []
    for i, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ModelError(join(path, i), f"expected a whole number of milliseconds, got {value!r}")
        stamps.append(value)
    return _checked_stamps(stamps, path)


def _checked_stamps(stamps: list[int], path: str) -> list[int]:
    if not stamps:
        raise ModelError(path, "the trace has no delivery opportunities")
    for i in range(1, len(stamps)):
        if stamps[i] < stamps[i - 1]:
            raise ModelError(path, f"timestamps must not decrease ({stamps[i]} after {stamps[i - 1]})")
    if stamps[-1] > MAX_TRACE_SECONDS * 1000:
        raise ModelError(path, f"a timestamp of {stamps[-1]} ms is beyond a week")
    if stamps[-1] <= 0:
        raise ModelError(path, "the last timestamp (the trace's period) must be above 0 ms")
    return stamps


def mahimahi_points(stamps: list[int], resolution: float, path: str = "mahimahi"
                    ) -> tuple[tuple[TracePoint, ...], float]:
    """The rate of each `resolution` bin, and the period (the last timestamp).

    A bin's rate is its opportunities times one frame (1514 bytes: the
    shaper counts the Ethernet header of each 1500-byte packet) over its
    width; the last bin may be shorter. The mean over the period is then
    exactly the trace's. An opportunity at the period itself counts in the
    last bin, as Mahimahi wraps there.
    """
    period_ms = stamps[-1]
    width_ms = max(1, round(resolution * 1000))
    bins = math.ceil(period_ms / width_ms)
    if bins > MAX_STEPS:
        raise ModelError(path, f"{period_ms} ms at {width_ms} ms bins is more than {MAX_STEPS} bins: "
                               "use a coarser resolution")
    counts = [0] * bins
    for stamp in stamps:
        counts[min(stamp // width_ms, bins - 1)] += 1
    bits = (MAHIMAHI_PACKET + FRAME_OVERHEAD) * 8
    points = []
    for index, count in enumerate(counts):
        start = index * width_ms
        width = min(width_ms, period_ms - start) / 1000
        rate = max(FLOOR_RATE, round(count * bits / width))
        points.append(TracePoint(time=start / 1000, values=QoSPatch(rate=rate)))
    return tuple(points), period_ms / 1000


def mahimahi_mean_rate(stamps: list[int]) -> float:
    """The trace's mean rate in bit/s of 1500-byte packets (Mahimahi's own view of it)."""
    return len(stamps) * MAHIMAHI_PACKET * 8 / (stamps[-1] / 1000)


def trace_file_names(raw: Any) -> list[str]:
    """The `file:` names in a `trace` value."""
    items = raw if isinstance(raw, list) else [raw]
    names = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and isinstance(item.get("file"), str):
            names.append(item["file"])
    return names


def model_trace_files(document: Any) -> list[str]:
    """Every trace file a compose document names (networks, links rules, switch links, blueprints'
    network entries), for a client that uploads them with the model; a malformed document gives what
    can be found."""
    fog = document.get("x-fogify") if isinstance(document, dict) else None
    if not isinstance(fog, dict):
        return []
    names: list[str] = []
    for network in fog.get("networks") or []:
        if isinstance(network, dict):
            names += trace_file_names(network.get("trace"))
            for key in ("links", "switch_links"):
                for link in network.get(key) or []:
                    if isinstance(link, dict):
                        names += trace_file_names(link.get("trace"))
    for blueprint in fog.get("topology") or []:
        for entry in (blueprint.get("networks") or []) if isinstance(blueprint, dict) else []:
            if isinstance(entry, dict):
                names += trace_file_names(entry.get("trace"))
    return list(dict.fromkeys(names))
