"""The trace player: one thread that makes the plan follow the running traces, step by step.

Each running trace has a clock (its start, shifted by its pauses) and the
next step of its schedule (compile.traces.steps). When steps fall due the
thread writes their values into the plan and asks the backend to reshape
only the attachments that changed, which on the local backend touches only
those links' qdiscs and delay queues. A step is late by the time between when
it was planned and when the backend returned; a thread held up (a long
action holds the deployment) applies the latest due step of each trace and
counts the ones it passed over as skipped, so a trace never falls behind;
the lateness of that application counts from the first step it passed over.

All state here is guarded by the deployment's lock (the Backend's), the same
one every action holds, so a step never interleaves with a move or a scale-out.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..backends.base import Backend
from ..compile.traces import Attachment, Step, apply_values, direction_values, restore, steps, traced_fields
from ..errors import BadRequest, NotFound
from ..model.limits import MAX_TRACES
from ..model.schema import BoundTrace

log = logging.getLogger(__name__)

LATENESS_KEPT = 100_000  # steps whose lateness is kept for the percentiles
Annotate = Callable[[str, str, "str | None"], None]


@dataclass
class Playback:
    """One trace's run: where it is, what it overrode, and how late its steps were."""

    bound: BoundTrace
    state: str = "stopped"  # stopped, running, paused, finished
    started: float | None = None  # epoch seconds of its (last) start
    origin: float = 0.0  # monotonic time of its offset 0 (moved forward by pauses)
    paused_at: float | None = None
    schedule: Iterator[Step] | None = field(default=None, repr=False)
    next: Step | None = None
    current: Step | None = None
    saved: dict = field(default_factory=dict, repr=False)
    applied: int = 0
    skipped: int = 0
    error: str | None = None
    lateness_ms: deque = field(default_factory=lambda: deque(maxlen=LATENESS_KEPT), repr=False)

    @property
    def name(self) -> str:
        return self.bound.name

    def position(self, now: float) -> float | None:
        if self.state == "stopped" or self.started is None:
            return None
        return round((self.paused_at if self.state == "paused" else now) - self.origin, 3)

    def status(self, now: float) -> dict:
        spec, target, trace = self.bound.spec, self.bound.target, self.bound.spec.trace
        late = sorted(self.lateness_ms)
        return {
            "name": self.name,
            "target": target.describe(),
            "network": target.network,
            "label": target.label,
            "link": list(target.link) if target.link else None,
            "direction": spec.direction,
            "source": trace.source,
            "mode": trace.mode,
            "resolution": trace.resolution,
            "loop": trace.loop,
            "duration": trace.duration,
            "autostart": spec.autostart,
            "state": self.state,
            "started": self.started,
            "position_s": self.position(now),
            "values": _describe(self.current),
            "steps": self.applied,
            "skipped": self.skipped,
            "lateness_ms": _percentiles(late),
            "error": self.error,
        }


def _describe(step: Step | None) -> dict | None:
    if step is None:
        return None
    values = step.values
    out: dict = {}
    if values.rate is not None:
        out["bandwidth_bps"] = values.rate
    if values.delay is not None:
        out["delay_ms"] = round(values.delay * 1000, 3)
    if values.jitter is not None:
        out["jitter_ms"] = round(values.jitter * 1000, 3)
    if values.loss is not None:
        out["loss_pct"] = values.loss
    return out


def _percentiles(late: list[float]) -> dict:
    if not late:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {"count": len(late), "p50": round(statistics.median(late), 3),
            "p95": round(late[min(len(late) - 1, int(0.95 * len(late)))], 3), "max": round(late[-1], 3)}


class TracePlayer:
    """The traces of one deployment: the model's, and any started inline by an action."""

    def __init__(self, emulation: Backend, annotate: Annotate | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.emulation = emulation
        self._annotate = annotate
        self._clock = clock
        self._cond = threading.Condition(emulation.lock)  # the deployment's lock guards the plan and us
        self._playbacks: dict[str, Playback] = {t.name: Playback(t) for t in emulation.plan.model.traces}
        self._thread: threading.Thread | None = None
        self._closing = False

    # --- commands -------------------------------------------------------------------------------

    def start_autostart(self) -> list[Playback]:
        """The model's traces that start with the deployment."""
        names = [p.name for p in self._playbacks.values() if p.bound.spec.autostart]
        return [self.start(name)[0] for name in names]

    def start(self, name: str | None = None, inline: BoundTrace | None = None) -> list[Playback]:
        """Start (or start again from its beginning) a trace by name, or an inline one (replacing its namesake)."""
        with self._cond:
            if inline is not None:
                if inline.name not in self._playbacks and len(self._playbacks) >= MAX_TRACES:
                    raise BadRequest(f"params.name: this deployment has {len(self._playbacks)} traces already, "
                                     f"at most {MAX_TRACES}: start one of them again or reuse a name")
                old = self._playbacks.get(inline.name)
                if old is not None and old.state != "stopped":
                    self._stop(old)
                self._playbacks[inline.name] = Playback(inline)
                name = inline.name
            playback = self._find(name)[0]
            if playback.state != "stopped":
                self._stop(playback)
            playback.schedule = steps(playback.bound.spec.trace)
            playback.next = next(playback.schedule, None)
            playback.origin, playback.started, playback.paused_at = self._clock(), time.time(), None
            playback.state, playback.error, playback.current = "running", None, None
            playback.applied = playback.skipped = 0
            playback.lateness_ms.clear()
            self._step([playback])  # its first values are in place when this returns
            self._ensure_thread()
            self._cond.notify_all()
            return [playback]

    def stop(self, name: str | None = None) -> list[Playback]:
        """Stop, and give the links back the values the trace overrode."""
        with self._cond:
            found = [p for p in self._find(name) if p.state != "stopped"]
            for playback in found:
                self._stop(playback)
            self._cond.notify_all()
            return found

    def pause(self, name: str | None = None) -> list[Playback]:
        """Hold the current values; resume continues from the same place in the trace."""
        with self._cond:
            found = [p for p in self._find(name) if p.state == "running"]
            for playback in found:
                playback.state, playback.paused_at = "paused", self._clock()
            return found

    def resume(self, name: str | None = None) -> list[Playback]:
        with self._cond:
            found = [p for p in self._find(name) if p.state == "paused"]
            now = self._clock()
            for playback in found:
                playback.origin += now - playback.paused_at
                playback.state, playback.paused_at = "running", None
            self._cond.notify_all()
            return found

    def refresh(self) -> None:
        """Give the current values again to whatever a trace drives now (an instance moved or was added)."""
        with self._cond:
            changed: set[Attachment] = set()
            for playback in self._active():
                if playback.current is not None:
                    changed |= self._write(playback, playback.current)
            if changed:
                self.emulation.reshape(changed)

    def close(self) -> None:
        """Stop the thread (the deployment goes away with its shaping; nothing is restored)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def status(self) -> list[dict]:
        with self._cond:
            now = self._clock()
            return [p.status(now) for p in self._playbacks.values()]

    def get(self, name: str) -> Playback:
        return self._find(name)[0]

    # --- the thread -----------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="trace-player", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while not self._closing:
                running = [p for p in self._playbacks.values() if p.state == "running" and p.next is not None]
                if not running:
                    self._cond.wait()
                    continue
                due = min(p.origin + p.next.offset for p in running)
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                try:
                    self._step(running)
                except Exception:  # a step that fails is recorded on its trace; the thread goes on
                    log.exception("trace step failed")

    def _step(self, playbacks: list[Playback]) -> None:
        """Apply the latest due step of each trace in one reshape; record lateness (the lock is held)."""
        now = self._clock()
        batch: list[tuple[Playback, Step, float]] = []
        for playback in playbacks:
            due, first = None, None
            while playback.next is not None and playback.origin + playback.next.offset <= now:
                if due is not None:
                    playback.skipped += 1
                due = playback.next
                first = first if first is not None else playback.origin + due.offset
                playback.next = next(playback.schedule, None)
            if due is not None:  # late since the first step it should have made
                batch.append((playback, due, first))
        if not batch:
            return
        changed: set[Attachment] = set()
        for playback, step, _ in batch:
            changed |= self._write(playback, step)
            playback.current = step
        error = None
        try:
            if changed:
                self.emulation.reshape(changed)
        except Exception as exc:  # the plan holds the values; the next reshape applies them
            error = str(exc) or type(exc).__name__
            log.error("trace step: %s", error)
        applied = self._clock()
        for playback, _, planned in batch:
            playback.applied += 1
            playback.error = error
            playback.lateness_ms.append(max(0.0, (applied - planned) * 1000))
            if playback.next is None and not playback.bound.spec.trace.loop:  # a looping one that stays the same
                playback.state = "finished"                                     # just runs on without steps
                self._note("TRACE_END", playback.name, "finished; its last values stay")

    def _write(self, playback: Playback, step: Step) -> set[Attachment]:
        up, down = direction_values(playback.bound.spec.direction, step.values, playback.bound.target)
        return apply_values(self.emulation.plan, playback.bound.target, up, down, playback.saved,
                            self._own_traces(playback))

    def _own_traces(self, playback: Playback) -> frozenset[str]:
        """Labels with a trace of their own on this network: a network's trace leaves them alone."""
        target = playback.bound.target
        if target.label is not None or target.link is not None or target.switch_link is not None:
            return frozenset()
        return frozenset(p.bound.target.label for p in self._active()
                         if p.bound.target.label is not None and p.bound.target.network == target.network)

    def _stop(self, playback: Playback) -> None:
        changed = restore(self.emulation.plan, playback.bound.target, playback.saved,
                          traced_fields(playback.bound.spec.trace))
        playback.state, playback.saved, playback.next, playback.schedule = "stopped", {}, None, None
        playback.current = None
        if changed:
            self.emulation.reshape(changed)
        if playback.bound.target.label is not None:  # its instances go back to their network's trace, if any
            self.refresh()

    def _active(self) -> list[Playback]:
        return [p for p in self._playbacks.values() if p.state in ("running", "paused", "finished")]

    def _find(self, name: str | None) -> list[Playback]:
        if name is None:
            return list(self._playbacks.values())
        playback = self._playbacks.get(name)
        if playback is None:
            known = ", ".join(self._playbacks) or "none"
            raise NotFound(f"unknown trace {name!r} (known: {known})")
        return [playback]

    def _note(self, annotation: str, name: str, text: str) -> None:
        if self._annotate is not None:
            try:
                self._annotate(annotation, name, text)
            except Exception:  # the store may be closing; the trace goes on
                log.debug("annotation %s of %s not stored", annotation, name, exc_info=True)
