"""Parsing of the unit strings a model uses: rates, durations, percentages, sizes, clocks.

Every parser takes the raw YAML value and the field path, and either returns a
plain number in a base unit or raises ModelError naming the field. Nothing is
ever replaced by a silent default (Fogify turned unknown rate units into 1bps).
"""

from __future__ import annotations

import math
import re

from .errors import ModelError, shown

_NUMBER = r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_SPLIT = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[A-Za-z%]*)\s*$")

# Rates. "bps" with a lower-case b is bits, as Fogify's documentation says;
# "Bps" with an upper-case B is bytes. tc-style "bit" suffixes are accepted too.
_RATE_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def _rate_multiplier(unit: str) -> int | None:
    """Bits per second for one unit of `unit`, or None when it is not a rate unit."""
    low = unit.lower()
    for suffix, bits in (("bit", 1), ("bps", 1)):
        if low.endswith(suffix) and low[: -len(suffix)] in _RATE_PREFIX:
            prefix = low[: -len(suffix)]
            if suffix == "bps" and unit[-3] == "B":
                bits = 8  # bytes per second: MBps, KBps, Bps
            return _RATE_PREFIX[prefix] * bits
    return None


# The largest values the kernel and Docker take (and a little beyond any experiment's need):
# a value above them would be accepted here and fail later, in a batch, for every link.
MAX_RATE = 10**12  # 1 Tbit/s; HTB takes 64-bit byte rates, but beyond this nothing is shaped anyway
MAX_DELAY = 60.0  # seconds of delay or jitter on a link (Fogify capped delay at 60000 ms too)
MAX_SIZE = 2**50  # 1 PiB of memory
MAX_CLOCK_MHZ = 10**6
MAX_COUNT = 10**9

_DURATION = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0}
_SIZE = {"": None, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_CLOCK = {"": 1.0, "mhz": 1.0, "ghz": 1000.0}


def _split(value: object, path: str, what: str) -> tuple[float, str]:
    """Split '10Mbps' into (10.0, 'Mbps'); numbers come back with an empty unit."""
    if isinstance(value, bool):
        raise ModelError(path, f"expected a {what}, got {shown(value)}")
    if isinstance(value, (int, float)):
        try:
            number, unit = float(value), ""
        except OverflowError:  # a 400-digit integer from YAML or JSON
            raise ModelError(path, f"{str(value)[:20]}... is far too large") from None
    elif isinstance(value, str):
        match = _SPLIT.match(value)
        if not match:
            raise ModelError(path, f"cannot read {shown(value)} as a {what}")
        number, unit = float(match["num"]), match["unit"]
    else:
        raise ModelError(path, f"expected a {what}, got {type(value).__name__} {shown(value)}")
    if not math.isfinite(number):
        raise ModelError(path, f"{shown(value)} is not a finite number")
    if number < 0:
        raise ModelError(path, f"negative value {shown(value)}")
    return number, unit


def parse_rate(value: object, path: str) -> int:
    """Rate in bits per second. '10Mbps' = 10 megabits/s, '1MBps' = 8 megabits/s."""
    number, unit = _split(value, path, "rate such as '10Mbps'")
    if not unit:
        raise ModelError(path, f"rate {shown(value)} has no unit (write e.g. '{number:g}Mbps')")
    multiplier = _rate_multiplier(unit)
    if multiplier is None:
        raise ModelError(
            path, f"unknown rate unit {shown(unit)} (use bps, kbps, Mbps, Gbps for bits/s or KBps, MBps for bytes/s)"
        )
    if number * multiplier > MAX_RATE:
        raise ModelError(path, f"rate {shown(value)} is above {MAX_RATE // 10**12} Tbit/s")
    bits = round(number * multiplier)
    if bits < 8:
        raise ModelError(path,
                         f"rate {shown(value)} is below 8 bit/s; to cut a link use drop: 100% or a link_down action")
    return bits


def parse_duration(value: object, path: str) -> float:
    """Duration in seconds. '50ms', '1.5s', '200us'; a bare 0 is allowed."""
    number, unit = _split(value, path, "duration such as '50ms'")
    if not unit:
        if number == 0:
            return 0.0
        raise ModelError(path, f"duration {shown(value)} has no unit (write e.g. '{number:g}ms')")
    factor = _DURATION.get(unit.lower() if unit != "µs" else unit)
    if factor is None:
        raise ModelError(path, f"unknown duration unit {shown(unit)} (use us, ms or s)")
    return number * factor


def parse_delay(value: object, path: str) -> float:
    """A link's delay or jitter in seconds, at most MAX_DELAY (what netem and the delay line take)."""
    seconds = parse_duration(value, path)
    if seconds > MAX_DELAY:
        raise ModelError(path, f"delay {shown(value)} is above {MAX_DELAY:g} s")
    return seconds


def parse_seconds(value: object, path: str) -> float:
    """Seconds for times in scenarios and actions: 30, '30', '1.5s' and '500ms' are all fine."""
    number, unit = _split(value, path, "time in seconds such as 30 or '500ms'")
    return number if not unit else parse_duration(value, path)


def parse_percent(value: object, path: str) -> float:
    """Percentage in [0, 100]. '0.1%', 0.1 and '0.1' all mean 0.1 percent, as in tc."""
    number, unit = _split(value, path, "percentage such as '0.1%'")
    if unit not in ("", "%"):
        raise ModelError(path, f"unknown unit {shown(unit)} for a percentage (use e.g. '0.1%')")
    if number > 100:
        raise ModelError(path, f"percentage {shown(value)} is above 100%")
    return number


def parse_size(value: object, path: str) -> int:
    """Memory size in bytes, binary multiples as Docker uses them: '512M', '0.5G', '4GB', '1Gi'."""
    number, unit = _split(value, path, "size such as '512M'")
    low = unit.lower()
    for tail in ("ib", "b", "i"):
        if len(low) > 1 and low.endswith(tail):
            low = low[: -len(tail)]
            break
    if low not in _SIZE:
        raise ModelError(path, f"unknown size unit {shown(unit)} (use K, M, G or T, e.g. '512M')")
    if _SIZE[low] is None:
        raise ModelError(path, f"size {shown(value)} has no unit (write e.g. '{number:g}M' or '{number:g}G')")
    if number * _SIZE[low] > MAX_SIZE:
        raise ModelError(path, f"size {shown(value)} is above 1 PiB")
    size = round(number * _SIZE[low])
    if size <= 0:
        raise ModelError(path, f"size {shown(value)} must be positive")
    return size


def parse_clock(value: object, path: str) -> float:
    """Clock speed in MHz. 1400, '1400MHz' and '1.4GHz' are the same."""
    number, unit = _split(value, path, "clock speed in MHz such as 1400")
    factor = _CLOCK.get(unit.lower())
    if factor is None:
        raise ModelError(path, f"unknown clock unit {shown(unit)} (use MHz or GHz)")
    if number <= 0:
        raise ModelError(path, f"clock speed {shown(value)} must be positive")
    if number * factor > MAX_CLOCK_MHZ:
        raise ModelError(path, f"clock speed {shown(value)} is above {MAX_CLOCK_MHZ} MHz")
    return number * factor


def parse_count(value: object, path: str, minimum: int = 0) -> int:
    """A whole number of things (cores, replicas, instances)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ModelError(path, f"expected a whole number, got {shown(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ModelError(path, f"expected a whole number, got {shown(value)}") from None
    if not number.is_integer():
        raise ModelError(path, f"expected a whole number, got {shown(value)}")
    if number < minimum:
        raise ModelError(path, f"must be at least {minimum}, got {shown(value)}")
    if number > MAX_COUNT:
        raise ModelError(path, f"{str(value)[:40]} is far too many (at most {MAX_COUNT})")
    return int(number)


def format_rate(bits: int) -> str:
    """A rate for people: '10Mbit/s', '512kbit/s' (tc gets exact bit counts instead)."""
    for unit, size in (("Gbit", 10**9), ("Mbit", 10**6), ("kbit", 10**3)):
        if bits >= size:
            return f"{bits / size:g}{unit}/s"
    return f"{bits}bit/s"


def format_duration(seconds: float) -> str:
    """A duration for people: '50ms', '2.5ms', '120us', '3s'."""
    if seconds >= 1:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1000:g}ms"
    return f"{seconds * 1e6:g}us"


def format_size(size: int) -> str:
    """A memory size for people: '512MiB', '2GiB'."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{size / factor:g}{unit}"
    return f"{size}B"
