"""The fidelity monitor: was each part of the emulation faithful in this round?

An emulator on a small machine can stop being faithful without failing: the
host's CPUs saturate, the delay line releases packets late, an HTB class
cannot send its rate, an instance gets less CPU than its quota, the sampler
misses rounds, a scenario action fires late. Mininet-HiFi (Handigol et al.,
CoNEXT 2012) answered this by monitoring the emulator's own invariants; this
module does that for fogify-net, once per sampling round, from the cumulative
readings every backend reports (fogify_net.host.fidelity.Readings) and from
the sampler and the scenario runner.

Each check compares one round (or a short window) against a threshold of
`Thresholds`; the README's "Fidelity" section documents them all. A check that
fails for `enter` consecutive rounds opens an *episode* on its target (a
machine, an instance, a link, the sampler, a scenario); the episode marks the
instances it affects (and links) `degraded` and ends after `clear_rounds`
clean rounds. The deployment is degraded while any episode is open.

Everything here is pure: readings in, a Verdict out (tests drive it with
synthetic readings); the controller stores episodes, annotations and the
`fidelity` metric.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from ..host.delayline.driver import LATE_EDGES_US
from ..host.fidelity import DelayQueue, HostCpu, InstanceCpu, LinkQueue, Readings

UNLIMITED_RATE = 10**11  # bit/s: a class that only carries a leaf (compile/tc.py's UNLIMITED) limits nothing

HOST_CPU, INSTANCE_CPU = "host_cpu", "instance_cpu"
DELAY_LATE, DELAY_DROPS, DELAY_DOWN = "delay_late", "delay_drops", "delay_down"
LINK_RATE, SAMPLER, SCENARIO = "link_rate", "sampler", "scenario"
CHECKS = (HOST_CPU, INSTANCE_CPU, DELAY_LATE, DELAY_DROPS, DELAY_DOWN, LINK_RATE, SAMPLER, SCENARIO)


@dataclass(frozen=True)
class Thresholds:
    """Where each check draws the line; the README's Fidelity section explains each."""

    host_busy_pct: float = 90.0  # host_cpu: all cores together at least this busy in a round ...
    host_wait_pct: float = 50.0  # ... while runnable tasks waited for a CPU this share of the round (PSI):
    # a machine 90% busy with tasks waiting 31% (a VM on one core) still held every delay and rate, while
    # more busy instances than cores make them wait 73-91% (bench/capacity.py, BENCHMARKS.md)
    host_rounds: int = 2  # ... for this many consecutive rounds
    instance_wait_pct: float = 10.0  # instance_cpu: it waited for a CPU (beyond its own throttling) this much ...
    instance_share: float = 0.9  # ... and got less than this share of its quota, in one round, while
    # what it got and what it waited for together reach that share (it wanted its quota)
    delay_late_ms: float = 1.0  # delay_late: p99 of the lateness over the window above this ...
    delay_late_min: int = 3  # ... with at least this many packets that late (one late packet is not a trend)
    delay_window: int = 3  # rounds of lateness pooled
    delay_drops: int = 1  # delay_drops: packets the kernel dropped at a delay queue in a round
    rate_low: float = 0.9  # link_rate: a class queueing packets every round of the window sent under this share ...
    rate_high: float = 1.1  # ... or any class sent over this share of its rate
    rate_window: int = 3  # rounds pooled
    sampler_late: float = 0.5  # sampler: a round started this share of its interval late, or skipped a slot
    action_late_ms: float = 100.0  # scenario: an action fired this late
    clear_rounds: int = 5  # an episode ends after this many clean rounds

    def enter(self, check: str) -> int:
        return self.host_rounds if check == HOST_CPU else 1

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SamplerHealth:
    """The sampler's schedule at this round: its interval, slots skipped so far, and this round's start lateness."""

    interval: float
    skipped: int
    late_s: float


@dataclass(frozen=True)
class FiredAction:
    """A scenario action that has fired (scenarios/runner.py's record)."""

    scenario: str
    position: int
    type: str
    label: str
    planned: float
    lateness_ms: float


@dataclass(frozen=True)
class Finding:
    """One check failing on one target in this round."""

    check: str
    target: str
    headline: str  # "delay line late by 3.2 ms p99 on wan (car.1 uplink)"
    detail: str  # shown after the duration, in parentheses; may be ""
    value: float  # how bad, in the check's unit (for the episode's worst)
    instances: tuple[str, ...] = ()
    network: str = ""
    span: float = 0.0  # seconds before now the evidence covers (a window of rounds), if longer than a round

    def reason(self, seconds: float) -> str:
        text = f"{self.headline} for {max(1, round(seconds))} s"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class Episode:
    """A target's unfaithful stretch: from the start of its first bad round to its end (None: still open)."""

    check: str
    target: str
    start: float
    instances: tuple[str, ...]
    network: str
    reason: str
    worst: float
    end: float | None = None
    id: int | None = None  # the store's row

    def as_dict(self) -> dict:
        return {"check": self.check, "target": self.target, "start": self.start, "end": self.end,
                "instances": list(self.instances), "network": self.network, "reason": self.reason,
                "worst": self.worst}


@dataclass
class Verdict:
    """The monitor's answer for one round."""

    state: str  # ok, degraded, or unknown (no round judged yet)
    reasons: list[str] = field(default_factory=list)
    instances: dict[str, list[str]] = field(default_factory=dict)  # degraded instance -> reasons
    links: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (instance, network) -> reasons
    started: list[Episode] = field(default_factory=list)
    ended: list[Episode] = field(default_factory=list)
    worse: list[Episode] = field(default_factory=list)  # open episodes whose worst grew this round


def late_bucket_floor(index: int) -> float:
    """Lower edge (us) of lateness bucket `index`."""
    return 0.0 if index == 0 else float(LATE_EDGES_US[index - 1])


def late_quantile(hist: Iterable[int], q: float) -> float:
    """The q-quantile (us) of a lateness histogram, interpolated within its bucket (the open last bucket
    reports its lower edge)."""
    counts = list(hist)
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = late_bucket_floor(index)
            if index >= len(LATE_EDGES_US):
                return low
            return low + (LATE_EDGES_US[index] - low) * (rank - seen) / count
        seen += count
    return late_bucket_floor(len(counts) - 1)


def _link_name(instance: str, network: str, direction: str, peer: str) -> str:
    return f"{network} ({instance} {direction}{f' toward {peer}' if peer else ''})"


def _rate_text(bits: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:g} {unit}"
    return f"{bits:g} bit/s"


class FidelityMonitor:
    """Judges one deployment's rounds; keeps the previous readings, the windows and the open episodes."""

    def __init__(self, thresholds: Thresholds | None = None):
        self.thresholds = thresholds or Thresholds()
        self.state = "unknown"
        self.verdict = Verdict("unknown")
        self.open: dict[tuple[str, str], Episode] = {}
        self._hosts: dict[str, HostCpu] = {}
        self._instances: dict[str, InstanceCpu] = {}
        self._links: dict[tuple, LinkQueue] = {}
        self._delays: dict[tuple, DelayQueue] = {}
        self._rate_window: dict[tuple, deque] = {}
        self._delay_window: dict[tuple, deque] = {}
        self._skipped: int | None = None
        self._seen_actions: set[tuple[str, float, int]] = set()
        self._bad: dict[tuple[str, str], tuple[int, float]] = {}  # key -> (consecutive bad rounds, first's start)
        self._good: dict[tuple[str, str], int] = {}  # open key -> consecutive clean rounds
        self._last_round: float | None = None
        self._rounds = 0

    # --- one round --------------------------------------------------------------------------------

    def observe(self, now: float, readings: Readings | None, sampler: SamplerHealth | None = None,
                actions: Iterable[FiredAction] = ()) -> Verdict:
        """Judge this round (`now`: epoch seconds) and return the verdict; episodes open and end here."""
        previous_round = self._last_round if self._last_round is not None else now
        findings: list[Finding] = []
        if readings is not None:
            findings += self._host_findings(readings)
            findings += self._instance_findings(readings)
            findings += self._link_findings(readings)
            findings += self._delay_findings(readings)
        all_instances = tuple(sorted(readings.instances)) if readings is not None else ()
        if sampler is not None:
            findings += self._sampler_findings(sampler, all_instances)
        findings += self._action_findings(actions, all_instances)
        self._last_round = now
        self._rounds += 1

        verdict = Verdict("unknown")
        current = {(f.check, f.target): f for f in findings}
        for key, finding in current.items():
            count, since = self._bad.get(key, (0, previous_round))
            self._bad[key] = (count + 1, since)
            episode = self.open.get(key)
            if episode is not None:
                self._good[key] = 0
                episode.instances, episode.network = finding.instances, finding.network
                episode.reason = finding.reason(now - episode.start)
                if finding.value > episode.worst:
                    episode.worst = finding.value
                    verdict.worse.append(episode)
            elif count + 1 >= self.thresholds.enter(finding.check):
                since = min(since, now - finding.span) if finding.span else since
                episode = Episode(finding.check, finding.target, since, finding.instances, finding.network,
                                  finding.reason(now - since), finding.value)
                self.open[key] = episode
                self._good[key] = 0
                verdict.started.append(episode)
        for key in [k for k in self._bad if k not in current]:
            del self._bad[key]
        for key in [k for k in self.open if k not in current]:
            self._good[key] = self._good.get(key, 0) + 1
            if self._good[key] >= self.thresholds.clear_rounds:
                verdict.ended.append(self.close(key, now))

        if self.open:
            verdict.state = "degraded"
        elif self._rounds >= 2:  # the first round only sets the counters the next one compares with
            verdict.state = "ok"
        for episode in sorted(self.open.values(), key=lambda e: (e.start, e.check, e.target)):
            verdict.reasons.append(episode.reason)
            for name in episode.instances:
                verdict.instances.setdefault(name, []).append(episode.reason)
                if episode.check in (DELAY_LATE, DELAY_DROPS, LINK_RATE) and episode.network:
                    verdict.links.setdefault((name, episode.network), []).append(episode.reason)
        self.state = verdict.state
        self.verdict = verdict
        return verdict

    def seen(self, actions: Iterable[FiredAction]) -> None:
        """Actions not to judge (they fired before this deployment)."""
        self._seen_actions.update((a.scenario, a.planned, a.position) for a in actions)

    def close(self, key: tuple[str, str], now: float) -> Episode:
        episode = self.open.pop(key)
        self._good.pop(key, None)
        episode.end = now
        return episode

    def close_all(self, now: float) -> list[Episode]:
        """End every open episode (the deployment goes away)."""
        return [self.close(key, now) for key in list(self.open)]

    # --- checks -----------------------------------------------------------------------------------

    def _host_findings(self, readings: Readings) -> list[Finding]:
        t = self.thresholds
        findings = []
        several = len(readings.hosts) > 1
        for node, now in readings.hosts.items():
            before = self._hosts.get(node)
            if before is None or len(before.cores) != len(now.cores) or now.at <= before.at:
                continue
            busy = [b1 - b0 for (b0, _), (b1, _) in zip(before.cores, now.cores)]
            total = [a1 - a0 for (_, a0), (_, a1) in zip(before.cores, now.cores)]
            if sum(total) <= 0 or min(busy) < 0:
                continue
            busy_pct = 100.0 * sum(busy) / sum(total)
            waited = None
            if now.stall_us is not None and before.stall_us is not None:
                waited = 100.0 * (now.stall_us - before.stall_us) / ((now.at - before.at) * 1e6)
            # without PSI (a kernel built without it), more runnable tasks than cores stand in for the waiting
            queued = waited >= t.host_wait_pct if waited is not None else now.runnable > len(now.cores)
            if busy_pct < t.host_busy_pct or not queued:
                continue
            cores = " ".join(f"{100.0 * b / a:.0f}%" for b, a in zip(busy, total) if a > 0)
            detail = f"cores {cores}" + (f", runnable tasks waited for a CPU {waited:.0f}% of the time"
                                         if waited is not None else f", {now.runnable} tasks runnable")
            on = f" on {node}" if several else ""
            affected = tuple(sorted(i.name for i in readings.instances.values() if i.node == node))
            findings.append(Finding(HOST_CPU, node, f"host CPU{on} saturated {busy_pct:.0f}%", detail, busy_pct,
                                    affected))
        self._hosts = dict(readings.hosts)
        return findings

    def _instance_findings(self, readings: Readings) -> list[Finding]:
        t = self.thresholds
        findings = []
        for name, now in readings.instances.items():
            before = self._instances.get(name)
            if (before is None or now.at <= before.at or now.stall_us is None or before.stall_us is None
                    or now.usage_ns < before.usage_ns or now.groups_gone != before.groups_gone):
                continue  # no previous reading, a restart, or a child group took its throttling along
            wall_ns = (now.at - before.at) * 1e9
            cores = len(readings.hosts[now.node].cores) if now.node in readings.hosts else 1
            quota = min(now.quota, cores) if now.quota > 0 else cores
            got = (now.usage_ns - before.usage_ns) / wall_ns
            waited_ns = (now.stall_us - before.stall_us) * 1000 - max(0, now.throttled_ns - before.throttled_ns)
            waited = max(0.0, 100.0 * waited_ns / wall_ns)
            # starved: below its quota, and the time it waited would have taken it there (at least one
            # task waited, so waiting counts at least one CPU). An instance that wants little (an idle app
            # whose wakeups wait on a busy machine) is not starved of its quota, however it waits.
            if (waited < t.instance_wait_pct or got >= t.instance_share * quota
                    or got + waited / 100 < t.instance_share * quota):
                continue
            findings.append(Finding(INSTANCE_CPU, name, f"{name} got {got:.2f} of its {quota:g} CPU",
                                    f"it waited for a CPU {waited:.0f}% of the time", waited, (name,)))
        self._instances = dict(readings.instances)
        return findings

    def _link_findings(self, readings: Readings) -> list[Finding]:
        t = self.thresholds
        findings = []
        current = {}
        for link in readings.links:
            key = (link.instance, link.network, link.direction, link.peer)
            current[key] = link
            before = self._links.get(key)
            if link.rate <= 0 or link.rate >= UNLIMITED_RATE:
                continue
            if before is None or link.at <= before.at or link.bytes < before.bytes or before.rate != link.rate:
                self._rate_window.pop(key, None)
                continue
            saturated = link.overlimits > before.overlimits and (link.qlen > 0 or link.drops > before.drops)
            window = self._rate_window.setdefault(key, deque(maxlen=t.rate_window))
            window.append((link.bytes - before.bytes, link.at - before.at, saturated))
            if len(window) < t.rate_window:
                continue
            span = sum(w[1] for w in window)
            sent = sum(w[0] for w in window) * 8 / span
            share = sent / link.rate
            name = _link_name(link.instance, link.network, link.direction, link.peer)
            if all(w[2] for w in window) and share < t.rate_low:
                findings.append(Finding(LINK_RATE, name, f"{name} sent {100 * share:.0f}% of its "
                                        f"{_rate_text(link.rate)}", "with packets waiting every round",
                                        100 * (1 - share), (link.instance,), link.network, span))
            elif share > t.rate_high:
                findings.append(Finding(LINK_RATE, name, f"{name} sent {100 * share:.0f}% of its "
                                        f"{_rate_text(link.rate)}", "", 100 * (share - 1),
                                        (link.instance,), link.network, span))
        for key in [k for k in self._rate_window if k not in current]:
            del self._rate_window[key]
        self._links = current
        return findings

    def _delay_findings(self, readings: Readings) -> list[Finding]:
        t = self.thresholds
        findings = []
        current = {}
        first_late = next((i for i in range(len(LATE_EDGES_US) + 1) if late_bucket_floor(i) >= t.delay_late_ms * 1000),
                          len(LATE_EDGES_US))
        for down in readings.delay_lines_down:
            findings.append(Finding(DELAY_DOWN, down, f"no delay on {down}", "", 1.0,
                                    tuple(sorted(readings.instances))))
        for delay in readings.delays:
            key = (delay.instance, delay.network, delay.direction, delay.peer, delay.queue)
            current[key] = delay
            before = self._delays.get(key)
            if (before is None or delay.released < before.released or len(delay.late_hist) != len(before.late_hist)
                    or delay.dropped < before.dropped):
                self._delay_window.pop(key, None)
                continue
            window = self._delay_window.setdefault(key, deque(maxlen=t.delay_window))
            if delay.released == before.released and delay.dropped == before.dropped:
                window.append(None)  # an idle round: nothing released, nothing dropped (most queues, most rounds)
                if not any(window):
                    continue
            else:
                delta = tuple(n - m for n, m in zip(delay.late_hist, before.late_hist))
                window.append((sum(delta[first_late:]), delay.released - before.released, delta))
            name = _link_name(delay.instance, delay.network, delay.direction, delay.peer)
            dropped = delay.dropped - before.dropped
            if dropped >= t.delay_drops:
                findings.append(Finding(DELAY_DROPS, name, f"delay line dropped {dropped} packets on {name}",
                                        "its queue, the helper's socket or its byte budget was full", float(dropped),
                                        (delay.instance,), delay.network))
            rounds = [entry for entry in window if entry]
            late, total = sum(entry[0] for entry in rounds), sum(entry[1] for entry in rounds)
            if late >= t.delay_late_min and late >= 0.01 * total:
                p99 = late_quantile([sum(column) for column in zip(*(entry[2] for entry in rounds))], 0.99) / 1000
                findings.append(Finding(DELAY_LATE, name, f"delay line late by {p99:.1f} ms p99 on {name}",
                                        f"{late} of {total} packets over {t.delay_late_ms:g} ms late", p99,
                                        (delay.instance,), delay.network))
        for key in [k for k in self._delay_window if k not in current]:
            del self._delay_window[key]
        self._delays = current
        return findings

    def _sampler_findings(self, sampler: SamplerHealth, instances: tuple[str, ...]) -> list[Finding]:
        findings = []
        skipped = 0 if self._skipped is None else max(0, sampler.skipped - self._skipped)
        self._skipped = sampler.skipped
        if skipped:
            findings.append(Finding(SAMPLER, "sampler", f"sampler skipped {skipped} round{'s' * (skipped > 1)}",
                                    "a round took longer than its interval", float(skipped), instances))
        elif sampler.late_s >= self.thresholds.sampler_late * sampler.interval:
            findings.append(Finding(SAMPLER, "sampler", f"sampler round started {sampler.late_s:.2f} s late", "",
                                    sampler.late_s, instances))
        return findings

    def _action_findings(self, actions: Iterable[FiredAction], instances: tuple[str, ...]) -> list[Finding]:
        findings = []
        for action in actions:
            key = (action.scenario, action.planned, action.position)
            if key in self._seen_actions:
                continue
            self._seen_actions.add(key)
            if action.lateness_ms >= self.thresholds.action_late_ms:
                affected = tuple(name for name in instances if name.rsplit(".", 1)[0] == action.label)
                findings.append(Finding(
                    SCENARIO, f"{action.scenario}#{action.position}",
                    f"scenario {action.scenario} action {action.position} ({action.type}) fired "
                    f"{action.lateness_ms:.0f} ms late", "", action.lateness_ms, affected))
        return findings


def fidelity_value(verdict: Verdict, instance: str) -> float | None:
    """The `fidelity` metric of an instance this round: 1.0 faithful, 0.0 degraded, None before any verdict."""
    if verdict.state == "unknown":
        return None
    return 0.0 if instance in verdict.instances else 1.0

