"""Custom delay distributions: from a trace of delays to netem's table, and the names a model may use.

Fogify's `POST /generate-network-distribution/<name>/` takes the output of
`ping` and makes a netem distribution table of it (its tools were never
committed; see fogify.md §6.5). Here the table is made in Python, in
iproute2's format (netem/maketable.c holds the facts): the trace is normalised
to mean 0 and standard deviation 1, and entry k of the 4096 is the trace's
quantile at (k + 1/2) / 4096, times 8192, clamped to a signed 16-bit value
(so the table reaches 4 standard deviations either side of the mean).

Which custom distributions exist is a context of parsing (`known_distributions`)
rather than a parameter of every reader: any direction of any network, link,
override or action may name one, and they all read a direction with
`networks.parse_qos_patch`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import ModelError, shown
from .fields import NAME
from .schema import DISTRIBUTIONS, TABLE_SCALE, DelayDistribution
from .units import MAX_DELAY

TABLE_SIZE = 4096  # entries, as maketable writes them (netem reads up to 16384)
TABLE_LIMIT = 32767  # entries are signed 16-bit
MAX_NAME = 32
MAX_SAMPLES = 1_000_000
ALIASES = {"gaussian": "normal"}  # Fogify's documentation's name for netem's normal table

_PING_TIME = re.compile(r"\btime[=<]\s*([0-9]+(?:\.[0-9]+)?)\s*ms\b")
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*$")
_known: ContextVar[Mapping[str, DelayDistribution] | None] = ContextVar("known_distributions", default=None)


@contextmanager
def known_distributions(distributions: Mapping[str, DelayDistribution]) -> Iterator[None]:
    """Let the model and action readers accept these custom distributions' names while parsing."""
    token = _known.set(dict(distributions))
    try:
        yield
    finally:
        _known.reset(token)


def lookup(name: str, path: str) -> tuple[str, DelayDistribution | None]:
    """A distribution as a direction names it: (its name, the custom one or None for a built-in)."""
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    if name in DISTRIBUTIONS:
        return name, None
    known = _known.get() or {}
    if isinstance(name, str) and name in known:
        return name, known[name]
    custom = ", ".join(sorted(known)) or "none yet"
    raise ModelError(path, f"unknown distribution {shown(name)} (built in: {', '.join(DISTRIBUTIONS)}; "
                           f"made by POST /generate-network-distribution/<name>/: {custom})")


def check_name(name: str, path: str = "name") -> str:
    """A name a new custom distribution may take."""
    if not isinstance(name, str) or not NAME.match(name) or len(name) > MAX_NAME:
        raise ModelError(path, f"invalid distribution name {shown(name)}: use up to {MAX_NAME} letters, digits, "
                               f"'-' and '_'")
    if name in DISTRIBUTIONS or name in ALIASES:
        raise ModelError(path, f"{shown(name)} is a built-in distribution; give yours another name")
    return name


def parse_trace(text: str, path: str = "file") -> list[float]:
    """Delays in ms from `ping` output (the `time=` of each reply) or from one number a line."""
    values = [float(m.group(1)) for m in _PING_TIME.finditer(text)]
    if not values:
        values = [float(m.group(1)) for line in text.splitlines() if (m := _NUMBER.match(line))]
    if len(values) < 2:
        raise ModelError(path, "found fewer than 2 delays: send the output of ping (lines with time=... ms) "
                               "or one delay in ms a line")
    if len(values) > MAX_SAMPLES:
        raise ModelError(path, f"{len(values)} delays; at most {MAX_SAMPLES} are read")
    if max(values) > MAX_DELAY * 1000:
        raise ModelError(path, f"a delay of {max(values):g} ms is above {MAX_DELAY:g} s")
    return values


def make_distribution(name: str, values: list[float], path: str = "file") -> DelayDistribution:
    """The distribution of `values` (ms): its statistics, as iproute2's netem/stats reports them, and its table."""
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if std == 0:
        raise ModelError(path, f"all {n} delays are {values[0]:g} ms: a distribution needs some spread")
    lagged = math.fsum((values[i] - mean) * (values[i - 1] - mean) for i in range(1, n))
    spread = math.fsum((values[i - 1] - mean) ** 2 for i in range(1, n))
    rho = lagged / spread if spread else 0.0
    return DelayDistribution(name=name, mean_ms=mean, std_ms=std, rho=rho, samples=n,
                             table=inverse_table(sorted((v - mean) / std for v in values)))


def inverse_table(normalised: list[float], size: int = TABLE_SIZE) -> tuple[int, ...]:
    """Entry k: the quantile at (k + 1/2) / size of sorted, normalised values, in table units.

    Between two samples the quantile is interpolated linearly, so a small trace
    gives a smooth table rather than steps.
    """
    n = len(normalised)
    table = []
    for k in range(size):
        position = min(max((k + 0.5) / size * n - 0.5, 0.0), n - 1.0)
        low = int(position)
        high = min(low + 1, n - 1)
        z = normalised[low] + (normalised[high] - normalised[low]) * (position - low)
        table.append(max(-TABLE_LIMIT, min(TABLE_LIMIT, round(z * TABLE_SCALE))))
    return tuple(table)


def summary(distribution: DelayDistribution) -> dict[str, str | int]:
    """Fogify's answer: the `key = value` lines of netem's stats tool (mu, sigma, rho), plus the count."""
    return {"mu": f"{distribution.mean_ms:.6f}", "sigma": f"{distribution.std_ms:.6f}",
            "rho": f"{distribution.rho:.6f}", "samples": distribution.samples}


def to_json(distribution: DelayDistribution) -> dict:
    return {"name": distribution.name, "mean_ms": distribution.mean_ms, "std_ms": distribution.std_ms,
            "rho": distribution.rho, "samples": distribution.samples, "table": list(distribution.table)}


def from_json(raw: dict) -> DelayDistribution:
    table = tuple(int(v) for v in raw["table"])
    if not 1 <= len(table) <= 16384 or any(not -32768 <= v <= 32767 for v in table):
        raise ValueError(f"distribution {raw.get('name')!r}: a table has 1 to 16384 signed 16-bit entries")
    return DelayDistribution(name=str(raw["name"]), mean_ms=float(raw["mean_ms"]), std_ms=float(raw["std_ms"]),
                             rho=float(raw["rho"]), samples=int(raw["samples"]), table=table)
