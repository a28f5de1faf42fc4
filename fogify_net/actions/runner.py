"""Runtime actions on a running emulation, each recorded as an annotation.

Every change goes into the plan, so it persists: a later action starts from
the current state, never from the model file (Fogify re-read its file and so
reverted earlier changes). The emulation applies the plan's difference; if
that fails, the plan's change is undone and the previous state re-applied, so
the plan never runs ahead of the kernel. Actions that change the plan hold the
emulation's lock throughout (`execute`), so they are serialised against each
other and against a deploy or teardown; commands and stress, which change
nothing in the plan and may run for minutes, do not.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..compile.resources import MIN_QUOTA
from ..errors import BadRequest, Conflict
from ..model.actions import (
    ACTIONS,
    Command,
    HorizontalScaling,
    Lifecycle,
    LinksChange,
    LinkState,
    Move,
    NetworkChange,
    Noop,
    Partition,
    Stress,
    SwitchLinkChange,
    TraceAction,
    VerticalScaling,
)
from ..model.errors import shown
from ..model.limits import MAX_INSTANCES
from ..model.units import format_duration, format_size
from .targets import known_label, known_network, move_sources, resolve, resolve_on_network, resolve_switch_link

if TYPE_CHECKING:
    from ..traces.player import TracePlayer

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What an action did: its annotation and anything the API returns besides "OK"."""

    annotation: str
    instance_name: str
    params: str
    result: dict = field(default_factory=dict)


LONG_RUNNING = (Command, Stress)  # no plan change: they run without the emulation's lock


class ActionRunner:
    def __init__(self, emulation: Backend, traces: TracePlayer | None = None):
        self.emulation = emulation
        self.traces = traces

    def execute(self, request, still_current: Callable[[], bool] = lambda: True) -> Outcome:
        """Run `request`; one that changes the plan holds the emulation's lock, and runs only if
        `still_current()` says, under that lock, that this emulation is still the deployed one."""
        if isinstance(request, LONG_RUNNING):
            return self.run(request)
        with self.emulation.lock:
            if not still_current():
                raise Conflict("the deployment changed meanwhile (undeployed?); nothing was done")
            outcome = self.run(request)
            if self.traces is not None and not isinstance(request, TraceAction):
                self._refresh_traces()
            return outcome

    def _refresh_traces(self) -> None:
        """What joined a traced network (a move, new replicas) gets the trace's current values now."""
        try:
            self.traces.refresh()
        except Exception as error:  # the action is done; the plan holds the values, the next step applies them
            log.error("giving the traces' current values to what an action changed failed: %s", error)

    @contextmanager
    def _applied_or_restored(self, restore: Callable[[], None], reapply: bool = True) -> Iterator[None]:
        """The block changes the plan and applies it; on failure `restore` puts the plan back and
        (with `reapply`) the previous state is applied again, then the error goes on."""
        try:
            yield
        except BaseException:
            restore()
            if reapply:
                try:
                    self.emulation.reshape()
                except Exception as error:  # the original error is the one to report
                    log.error("re-applying the previous shaping failed too: %s", error)
            raise

    @property
    def plan(self):
        return self.emulation.plan

    def _running(self, instances: list, what: str) -> list:
        """Refuse to act inside crashed or lost instances: they have no processes and no namespace (a
        lost one says why: its container stopped, or its Swarm node does not answer)."""
        lost = [f"{i.name} is down: {self.emulation.lost[i.name]}" for i in instances if i.name in self.emulation.lost]
        if lost:
            raise Conflict(f"{'; '.join(lost)} (not {what} until it runs again)")
        down = [i.name for i in instances if i.name in self.emulation.crashed]
        if down:
            raise Conflict(f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} crashed: "
                           f"restart {'it' if len(down) == 1 else 'them'} before {what}")
        return instances

    @functools.singledispatchmethod
    def run(self, request) -> Outcome:
        raise BadRequest(f"unsupported action {type(request).__name__}")

    @run.register
    def _(self, request: HorizontalScaling) -> Outcome:
        label = known_label(self.plan, request.target.label)
        if self.plan.model.blueprint(label).single:
            raise BadRequest(f"params.instance_type: {label} is a single host (single: true), it does not scale")
        annotation = ACTIONS["horizontal_scaling"].annotation
        if request.up:
            total = len(self.plan.instances) + request.count
            if total > MAX_INSTANCES:
                raise BadRequest(f"params.instances: {request.count} more would make {total} instances; "
                                 f"a deployment has at most {MAX_INSTANCES}")
            added = self.emulation.scale_out(label, request.count)
            return Outcome(f"{annotation}_UP", label, f"num of instances: {request.count}",
                           {"instances": [i.name for i in added]})
        removed = self.emulation.scale_in(label, request.count)
        return Outcome(f"{annotation}_DOWN", label, f"Num of instances: {request.count}",
                       {"instances": [i.name for i in removed]})

    @run.register
    def _(self, request: VerticalScaling) -> Outcome:
        changed = {}
        for instance in resolve(self.plan, request.target):
            if request.resource == "cpu":
                quota = (instance.cpu_quota * (1 + request.relative_percent / 100)
                         if request.relative_percent is not None else request.absolute * instance.cpu_period)
                quota = max(MIN_QUOTA, round(quota))
                self.emulation.update_resources(instance, cpu_quota=quota)
                changed[instance.name] = {"cpus": round(instance.cpus, 4)}
            else:
                memory = (instance.memory * (1 + request.relative_percent / 100)
                          if request.relative_percent is not None else request.absolute)
                memory = max(4 * 2**20, round(memory))  # Docker refuses limits below 6 MiB-ish; keep a sane floor
                self.emulation.update_resources(instance, memory=memory)
                changed[instance.name] = {"memory": instance.memory}
        if request.relative_percent is not None:
            change = f"{request.relative_percent:+g}%"
        elif request.resource == "cpu":
            change = f"{request.absolute:g} CPUs"
        else:
            change = format_size(int(request.absolute))
        return Outcome(ACTIONS["vertical_scaling"].annotation, str(request.target),
                       f"Parameters: {request.resource.upper()} => {change}", {"instances": changed})

    @run.register
    def _(self, request: NetworkChange) -> Outcome:
        instances = resolve_on_network(self.plan, request.target, request.network)
        saved = [(i.interface(request.network), i.interface(request.network).uplink,
                  i.interface(request.network).downlink) for i in instances]

        def restore() -> None:
            for interface, uplink, downlink in saved:
                interface.uplink, interface.downlink = uplink, downlink

        with self._applied_or_restored(restore):
            for interface, uplink, downlink in saved:
                interface.uplink = uplink.patched(request.uplink)
                interface.downlink = downlink.patched(request.downlink)
            self.emulation.reshape()
        sample = instances[0].interface(request.network)
        return Outcome(ACTIONS["network"].annotation, str(request.target),
                       f"Parameters: Network => {request.network}, uplink=> {sample.uplink.describe()} , "
                       f"downlink=> {sample.downlink.describe()}",
                       {"instances": [i.name for i in instances]})

    @run.register
    def _(self, request: LinksChange) -> Outcome:
        rules = self.plan.networks[known_network(self.plan, request.network)].links
        members = {instance.label for instance in self.plan.members(request.network)}
        for link in request.links:
            for label in (link.source, link.target):
                known_label(self.plan, label)
                if label not in members:
                    raise BadRequest(f"params.links: {shown(label)} has no instance on network "
                                     f"{shown(request.network)}")
        saved = list(rules)

        def restore() -> None:
            rules[:] = saved

        with self._applied_or_restored(restore):
            for link in request.links:
                rules[:] = [r for r in rules if (r.source, r.target) != (link.source, link.target)] + [link]
            self.emulation.reshape()
        return Outcome(ACTIONS["links"].annotation, ",".join(sorted({link.source for link in request.links})),
                       f"parameters: Network => {request.network}, link number=> {len(request.links)}")

    @run.register
    def _(self, request: Stress) -> Outcome:
        started = {}
        for instance in self._running(resolve(self.plan, request.target), "stressing"):
            started[instance.name] = self.emulation.stress(instance, request)
        commands = next(iter(started.values()), [])
        return Outcome(ACTIONS["stress"].annotation, str(request.target), f"Parameters: {'; '.join(commands)}",
                       {"instances": list(started)})

    @run.register
    def _(self, request: Command) -> Outcome:
        results = {}
        for instance in self._running(resolve(self.plan, request.target), "running a command"):
            results[instance.name] = self.emulation.run_command(instance, request.command, request.wait,
                                                                request.timeout)
        text = request.command if isinstance(request.command, str) else " ".join(request.command)
        return Outcome(ACTIONS["command"].annotation, str(request.target), f"Parameters: {text}",
                       {"results": results} if request.wait else {})

    @run.register
    def _(self, request: LinkState) -> Outcome:
        instances = resolve_on_network(self.plan, request.target, request.network)
        saved = [(i.interface(request.network), i.interface(request.network).up) for i in instances]

        def restore() -> None:
            for interface, up in saved:
                interface.up = up

        with self._applied_or_restored(restore, reapply=False):
            self.emulation.set_link_state(instances, request.network, request.up)
        kind = "link_up" if request.up else "link_down"
        return Outcome(ACTIONS[kind].annotation, str(request.target), f"Parameters: Network => {request.network}",
                       {"instances": [i.name for i in instances]})

    @run.register
    def _(self, request: SwitchLinkChange) -> Outcome:
        a, b = request.switches
        link = resolve_switch_link(self.plan, a, b)
        forward, backward = (request.forward, request.backward) if link.source == a else (
            request.backward, request.forward)
        saved = (link.forward, link.backward, link.up)

        def restore() -> None:
            link.forward, link.backward = saved[0], saved[1]

        if forward is not None or backward is not None:
            with self._applied_or_restored(restore):
                link.forward = link.forward.patched(forward)
                link.backward = link.backward.patched(backward)
                self.emulation.reshape()
        if request.up is not None:
            def replug() -> None:  # both ends back as they were; the shaping too, if it changed above
                restore()
                try:
                    self.emulation.set_switch_link_state(link, saved[2])
                except Exception as error:  # the original error is the one to report
                    log.error("plugging switch link %s back as it was failed too: %s", link.name, error)
                link.up = saved[2]

            with self._applied_or_restored(replug, reapply=forward is not None or backward is not None):
                self.emulation.set_switch_link_state(link, request.up)
        kind = {None: "switch_link", True: "link_up", False: "link_down"}[request.up]
        if kind != "switch_link" and (forward is not None or backward is not None):
            kind = "switch_link"
        state = "" if request.up is None else f", {'up' if request.up else 'down'}"
        return Outcome(ACTIONS[kind].annotation, f"{a}|{b}",
                       f"Parameters: {link.source}->{link.target} {link.forward.describe()}, "
                       f"{link.target}->{link.source} {link.backward.describe()}{state}",
                       {"switch_link": {"name": link.name, "up": link.up, "forward": link.forward.describe(),
                                        "backward": link.backward.describe()}})

    @run.register
    def _(self, request: Partition) -> Outcome:
        for label in (request.source, request.target):
            known_label(self.plan, label)
        if request.network is not None:
            known_network(self.plan, request.network)
        key = (request.source, request.target, request.network)
        saved = set(self.plan.partitions)

        def restore() -> None:
            self.plan.partitions = saved

        with self._applied_or_restored(restore):
            if request.heal:
                self.plan.partitions = {p for p in saved if {p[0], p[1]} != {request.source, request.target}
                                        or (request.network is not None and p[2] != request.network)}
            else:
                self.plan.partitions = saved | {key}
            self.emulation.reshape()
        kind = "heal" if request.heal else "partition"
        where = request.network or "all networks"
        return Outcome(ACTIONS[kind].annotation, f"{request.source}|{request.target}",
                       f"Parameters: Network => {where}")

    @run.register
    def _(self, request: Lifecycle) -> Outcome:
        instances = resolve(self.plan, request.target)
        if request.restart:
            self.emulation.restart(instances)
        else:
            self.emulation.crash(self._running(instances, "crashing it again"))
        kind = "restart" if request.restart else "crash"
        return Outcome(ACTIONS[kind].annotation, str(request.target), "", {"instances": [i.name for i in instances]})

    @run.register
    def _(self, request: Move) -> Outcome:
        known_network(self.plan, request.to)
        if request.source is not None:
            known_network(self.plan, request.source)
        instances = self._running(resolve(self.plan, request.target), "moving it")
        sources, unchanged = move_sources(self.plan, instances, request.to, request.source)
        capacity = self.plan.model.networks[request.to].capacity
        joining = sum(len(group) for group in sources.values())
        if capacity is not None and len(self.plan.members(request.to)) + joining > capacity:
            raise BadRequest(f"params.to: network {request.to!r} holds at most {capacity} instances "
                             f"({len(self.plan.members(request.to))} are on it)")
        moved = {}
        done: list[tuple[str, list]] = []
        try:
            for source, group in sources.items():  # a backend's move is all or nothing for its group
                self.emulation.move(group, source, request.to, request.overlap)
                done.append((source, group))
                for instance in group:
                    moved[instance.name] = {"from": source, "to": request.to,
                                            "ip": str(instance.interface(request.to).ip)}
        except BaseException:
            self._move_back(done, request.to)
            raise
        where = ", ".join(sorted(sources)) or request.source or "-"
        overlap = f"make-before-break, overlap {format_duration(request.overlap)}" if request.overlap else \
            "break-before-make"
        return Outcome(ACTIONS["move"].annotation, str(request.target),
                       f"Parameters: Network => {where} -> {request.to}, {overlap}",
                       {"instances": moved, "unchanged": unchanged})

    def _move_back(self, done: list[tuple[str, list]], to: str) -> None:
        """Undo the groups a failed move had moved already, so that nothing is half-applied."""
        for source, group in reversed(done):
            try:
                self.emulation.move(group, to, source, 0.0)
            except Exception as error:  # the original error is the one to report
                log.error("moving %s back to %s failed too: %s", ", ".join(i.name for i in group), source, error)

    @run.register
    def _(self, request: TraceAction) -> Outcome:
        if self.traces is None:
            raise Conflict("traces run with a deployment; nothing is deployed")
        if request.inline is not None:
            known_network(self.plan, request.inline.target.network)
            playbacks = self.traces.start(inline=request.inline)
        else:
            playbacks = getattr(self.traces, request.command)(request.name)
        failed = [p for p in playbacks if p.error] if request.command == "start" else []
        if failed:  # its first values could not be applied: stopped again, the links given back
            error = failed[0].error
            for playback in failed:
                try:
                    self.traces.stop(playback.name)
                except Exception as again:  # the original error is the one to report
                    log.error("giving back the links of trace %s failed too: %s", playback.name, again)
            raise RuntimeError(f"trace {failed[0].name}: its first values could not be applied: {error}")
        status = self.traces.status()
        names = {p.name for p in playbacks}
        return Outcome(ACTIONS["trace"].annotation, request.name or "all traces",
                       f"Parameters: {request.command} {', '.join(sorted(names)) or 'nothing to ' + request.command}",
                       {"traces": [s for s in status if s["name"] in names]})

    @run.register
    def _(self, request: Noop) -> Outcome:
        return Outcome(ACTIONS["noop"].annotation, "", "")
