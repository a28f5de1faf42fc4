"""Traces in time and in the plan: the steps a trace takes, and what one step changes.

`steps(trace)` turns a trace's points into the moments its link properties
change: the value is looked up (stepped) or interpolated (linear) on a grid of
`resolution` from each pass's start, and a step is made only when the value
differs from the last one, so a slow trace costs nothing between its rows.
`apply_values` writes a step's values into the plan, where the backend's
reshape finds them; `restore` puts back what a trace overrode.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

from ..model.schema import LinkRule, QoS, QoSPatch, Trace, TraceTarget
from .plan import InstancePlan, InterfacePlan, Plan, SwitchLinkPlan

TRACED_FIELDS = ("rate", "delay", "jitter", "loss")
Attachment = tuple[str, str]  # (instance name, network): what a backend's reshape is told changed;
# a switch link is (its name, network), as its shaping names it (compile/shaping.py)


@dataclass(frozen=True)
class Step:
    offset: float  # seconds after the trace's start (passes included)
    values: QoSPatch


class _Series:
    """One property's points, for lookups by time."""

    def __init__(self, times: list[float], values: list[float]):
        self.times, self.values = times, values

    def step_at(self, t: float) -> float:
        index = bisect.bisect_right(self.times, t) - 1
        return self.values[max(index, 0)]

    def linear_at(self, t: float, period: float, wrap: bool) -> float:
        times, values = self.times, self.values
        if t <= times[0]:
            return values[0]
        index = bisect.bisect_right(times, t) - 1
        if index + 1 < len(times):
            t0, t1, v0, v1 = times[index], times[index + 1], values[index], values[index + 1]
        elif wrap and period > times[-1]:  # from the last point back to the first, at the next pass's start
            t0, t1, v0, v1 = times[-1], period + times[0], values[-1], values[0]
        else:
            return values[-1]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _series(trace: Trace) -> dict[str, _Series]:
    series: dict[str, _Series] = {}
    for name in TRACED_FIELDS:
        points = [(p.time, getattr(p.values, name)) for p in trace.points if getattr(p.values, name) is not None]
        if points:
            series[name] = _Series([t for t, _ in points], [v for _, v in points])
    return series


def _rounded(values: dict[str, float]) -> QoSPatch:
    """What the kernel can tell apart: whole bits/s, microseconds, 0.0001 % of loss."""
    out: dict[str, float | int] = {}
    for name, value in values.items():
        if name == "rate":
            out[name] = max(8, round(value))
        elif name in ("delay", "jitter"):
            out[name] = round(max(value, 0.0), 6)
        else:
            out[name] = min(100.0, round(max(value, 0.0), 4))
    return QoSPatch(**out)


def value_at(trace: Trace, t: float) -> QoSPatch:
    """The trace's values `t` seconds into a pass (0 <= t < duration)."""
    series = _series(trace)
    if trace.mode == "linear":
        return _rounded({n: s.linear_at(t, trace.duration, trace.loop) for n, s in series.items()})
    return _rounded({n: s.step_at(t + 1e-9) for n, s in series.items()})


def _pass_ticks(trace: Trace) -> list[float]:
    """Offsets in one pass where the value may change: the grid for linear, each point (on the grid) for step."""
    grid = trace.resolution
    count = max(1, math.ceil(trace.duration / grid - 1e-9))
    if trace.mode == "linear":
        return [k * grid for k in range(count)]
    ticks = sorted({min(count - 1, math.ceil(p.time / grid - 1e-9)) for p in trace.points} | {0})
    return [k * grid for k in ticks]


def steps(trace: Trace) -> Iterator[Step]:
    """The changes of `trace`, in order; endless when it loops, else ending with its last change."""
    series = _series(trace)
    ticks = _pass_ticks(trace)
    if trace.mode == "linear":
        def at(t: float) -> QoSPatch:
            return _rounded({n: s.linear_at(t, trace.duration, trace.loop) for n, s in series.items()})
    else:
        def at(t: float) -> QoSPatch:  # a tick on the grid may fall an ulp short of its point's time
            return _rounded({n: s.step_at(t + 1e-9) for n, s in series.items()})
    values = [at(t) for t in ticks]  # one pass, computed once
    last = None
    base = 0.0
    while True:
        made = 0
        for tick, value in zip(ticks, values):
            if value != last:
                yield Step(round(base + tick, 9), value)
                last = value
                made += 1
        if not trace.loop or (made == 0 and base > 0):  # a pass without change: every later one is the same
            return
        base += trace.duration


def direction_values(direction: str, values: QoSPatch, target: TraceTarget | None = None
                     ) -> tuple[QoSPatch | None, QoSPatch | None]:
    """(uplink, downlink) patches of one step: the path's values split per direction, or one direction's.

    A host-to-host path crosses two links (the sender's uplink, the receiver's downlink), so its values
    are split between them; a switch link is one cable that each direction crosses whole, so each gets
    them whole, as its `symmetric` values do."""
    if direction == "bidirectional":
        both = values if target is not None and target.switch_link is not None else values.split_per_direction()
        return both, both
    return (values, None) if direction == "uplink" else (None, values)


# --- the plan -----------------------------------------------------------------------------------


def attachments(plan: Plan, target: TraceTarget, skip_labels: frozenset[str] = frozenset()
                ) -> list[tuple[InstancePlan, InterfacePlan]]:
    """The instances' interfaces a network's or a label's trace drives now (membership changes with moves)."""
    found = []
    for instance in plan.instances:
        if target.label is not None and instance.label != target.label:
            continue
        if target.label is None and instance.label in skip_labels:
            continue
        interface = instance.interface(target.network)
        if interface is not None:
            found.append((instance, interface))
    return found


def _patched(qos: QoS, patch: QoSPatch | None) -> QoS:
    return qos if patch is None else qos.patched(patch)


def apply_values(plan: Plan, target: TraceTarget, up: QoSPatch | None, down: QoSPatch | None,
                 saved: dict, skip_labels: frozenset[str] = frozenset()) -> set[Attachment]:
    """Write one step into the plan; returns the attachments whose shaping changed.

    `saved` collects what each overridden place held before the trace first
    touched it (for `restore`): interfaces by (instance, network), the links
    rule by its pair.
    """
    if target.switch_link is not None:
        return _apply_switch_link(plan, target, up, down, saved)
    if target.link is not None:
        return _apply_link(plan, target, up, down, saved)
    changed = set()
    for instance, interface in attachments(plan, target, skip_labels):
        key = (instance.name, target.network)
        saved.setdefault(key, (interface.uplink, interface.downlink))
        uplink, downlink = _patched(interface.uplink, up), _patched(interface.downlink, down)
        if (uplink, downlink) != (interface.uplink, interface.downlink):
            interface.uplink, interface.downlink = uplink, downlink
            changed.add(key)
    return changed


def _apply_link(plan: Plan, target: TraceTarget, up: QoSPatch | None, down: QoSPatch | None,
                saved: dict) -> set[Attachment]:
    rules = plan.networks[target.network].links
    source, peer = target.link
    index = next((i for i, r in enumerate(rules) if (r.source, r.target) == (source, peer)), None)
    if index is None:  # a trace on a pair without a rule: a rule of its own, bidirectional
        rules.append(LinkRule(source, peer, QoSPatch(), QoSPatch(), bidirectional=True))
        index = len(rules) - 1
        saved.setdefault(("link", source, peer), None)
    rule = rules[index]
    saved.setdefault(("link", source, peer), rule)
    new = replace(rule, uplink=_merge(rule.uplink, up), downlink=_merge(rule.downlink, down))
    if new == rule:
        return set()
    rules[index] = new
    return _pair_attachments(plan, target)


def _switch_link(plan: Plan, target: TraceTarget) -> SwitchLinkPlan | None:
    return next((link for link in plan.networks[target.network].switch_links
                 if (link.source, link.target) == target.switch_link), None)


def _apply_switch_link(plan: Plan, target: TraceTarget, up: QoSPatch | None, down: QoSPatch | None,
                       saved: dict) -> set[Attachment]:
    link = _switch_link(plan, target)
    if link is None:
        return set()
    saved.setdefault(("switch_link", *target.switch_link), (link.forward, link.backward))
    forward, backward = _patched(link.forward, up), _patched(link.backward, down)
    if (forward, backward) == (link.forward, link.backward):
        return set()
    link.forward, link.backward = forward, backward
    return {(link.name, link.network)}


def _merge(patch: QoSPatch, values: QoSPatch | None) -> QoSPatch:
    return patch if values is None else replace(patch, **values.values())


def _pair_attachments(plan: Plan, target: TraceTarget) -> set[Attachment]:
    labels = set(target.link)
    return {(i.name, target.network) for i in plan.instances
            if i.label in labels and i.interface(target.network) is not None}


def restore(plan: Plan, target: TraceTarget, saved: dict, traced: set[str]) -> set[Attachment]:
    """Put back the `traced` fields of every place the trace changed, as they were before it."""
    changed: set[Attachment] = set()
    if target.switch_link is not None:
        link = _switch_link(plan, target)
        key = ("switch_link", *target.switch_link)
        if link is None or key not in saved:
            return changed
        forward = _fields_from(link.forward, saved[key][0], traced)
        backward = _fields_from(link.backward, saved[key][1], traced)
        if (forward, backward) != (link.forward, link.backward):
            link.forward, link.backward = forward, backward
            changed.add((link.name, link.network))
        return changed
    if target.link is not None:
        key = ("link", *target.link)
        if key not in saved:
            return changed
        rules = plan.networks[target.network].links
        index = next((i for i, r in enumerate(rules) if (r.source, r.target) == target.link), None)
        if index is None:
            return changed
        before = saved[key]
        if before is None:
            del rules[index]
        else:
            rule = rules[index]
            rules[index] = replace(rule, uplink=_fields_from(rule.uplink, before.uplink, traced),
                                   downlink=_fields_from(rule.downlink, before.downlink, traced))
        return _pair_attachments(plan, target)
    for instance in plan.instances:
        key = (instance.name, target.network)
        interface = instance.interface(target.network)
        if key not in saved or interface is None:
            continue
        up, down = saved[key]
        uplink = _fields_from(interface.uplink, up, traced)
        downlink = _fields_from(interface.downlink, down, traced)
        if (uplink, downlink) != (interface.uplink, interface.downlink):
            interface.uplink, interface.downlink = uplink, downlink
            changed.add(key)
    return changed


def _fields_from(current, before, names: set[str]):
    """`current` with the fields `names` taken from `before` (QoS or QoSPatch alike)."""
    known = {f.name for f in fields(current)}
    return replace(current, **{name: getattr(before, name) for name in names if name in known})


def traced_fields(trace: Trace) -> set[str]:
    """The properties a trace gives at some point (the ones it overrides, and restores at its stop)."""
    return {name for name in TRACED_FIELDS if any(getattr(p.values, name) is not None for p in trace.points)}
