"""What the controller, the actions, the scenarios and the monitoring ask of a deployment.

One interface, several backends (as Kathara's IManager with its Docker and
Kubernetes managers): `LocalBackend` runs the plan as a Mininet network of
Docker hosts on this machine, `SwarmBackend` as Swarm services over overlay
networks on a cluster. Nothing above this interface knows which one runs, and
this interface imports none of its clients: it speaks in plans (compile),
action requests (model) and plain dictionaries of samples.

The base class holds what every backend shares: the plan, the state and its
callback, the lock that serialises changes, and the deploy template that
rolls back whatever a failed bring-up made. Every runtime change goes into the
plan first (`backend.plan`), then the backend applies it; so the plan is
always the current state, whichever backend.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

from ..errors import FogifyError
from ..model.errors import ModelError

if TYPE_CHECKING:
    from ..compile.flows import Flow
    from ..compile.plan import InstancePlan, Plan, SwitchLinkPlan
    from ..host.fidelity import Readings
    from ..model.actions import Stress

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, what)
StateCallback = Callable[[str, str], None]  # (state, detail)
Samples = dict[str, dict[str, float]]  # instance -> metric -> value


class DeployError(RuntimeError):
    """The deployment could not be brought up; everything it made has been removed."""


@dataclass(frozen=True)
class TaskFacts:
    """What a client can act on for one instance: the container behind it, as Swarm describes a task.

    `state` is Swarm's word: `running`, or `failed` for an instance whose container does not run
    (stopped by the crash action, or without fogify-net: killed, OOM-killed).
    """

    id: str  # the task id (Swarm's; on this machine the container's short id)
    node_id: str  # the Swarm node (on this machine, its hostname)
    container_id: str  # the Docker container id, usable with `docker exec` on that node
    pid: int  # the container's init pid on that node, 0 when it does not run
    state: str
    created: str  # when the container was created, RFC 3339 as Docker writes it


def no_progress(done: int, total: int, what: str) -> None:
    """The progress callback of a deploy nobody watches."""


class Backend(ABC):
    """One deployment of a plan. All methods but the queries may block for seconds."""

    name: ClassVar[str]  # the registry's name for it: local, swarm
    mechanism: str  # how delay and loss are made: "netem", "userspace" or "rate-only"

    def __init__(self, plan: Plan, on_state: StateCallback | None = None):
        self.plan = plan
        self.state = "created"  # created, deploying, running, degraded, error, stopped
        self.detail = ""  # why, when degraded or error
        self.crashed: set[str] = set()  # instances stopped by the crash action, until they restart
        self.lost: dict[str, str] = {}  # instances whose container stopped without us (OOM, dockerd), and why
        self.counts_flows = False  # its networks count flows for packet-level monitoring (/packets/)
        self.notices: list[str] = []  # what a deploy did besides the plan, for the user (leftovers it removed)
        self.lock = threading.RLock()  # one change at a time; deploy and teardown hold it throughout
        self._on_state = on_state

    # --- life cycle ---------------------------------------------------------------------------

    @abstractmethod
    def check(self) -> None:
        """Refuse at once what cannot deploy (missing images, leftovers): ModelError or Conflict."""

    def deploy(self, progress: Progress | None = None) -> None:
        """Bring the whole plan up, or raise after removing what was made.

        Errors the user can act on (a bad model, a conflict) pass unchanged;
        anything else becomes a DeployError carrying its message.
        """
        with self.lock:
            self._set_state("deploying")
            try:
                self._bring_up(progress or no_progress)
            except BaseException as error:
                log.error("%s deploy failed, rolling back: %s", self.name, error)
                self._set_state("error", str(error))
                try:
                    self.teardown()
                except Exception as cleanup_error:  # report both; the original error matters most
                    log.error("rollback incomplete: %s", cleanup_error)
                if isinstance(error, (FogifyError, ModelError, KeyboardInterrupt)):
                    raise
                raise DeployError(str(error)) from error
            self._set_state("running")
            self._after_bring_up()

    @abstractmethod
    def _bring_up(self, progress: Progress) -> None:
        """Make everything the plan asks for; on an exception, deploy() tears down what was made."""

    def _after_bring_up(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Start what watches a running deployment (the Swarm reconciler); nothing by default."""

    @classmethod
    @abstractmethod
    def remove_remains(cls, **options) -> list[str]:
        """Remove what a deployment of a process that died (SIGKILL) left; what was removed, one line each.

        `options` are the backend's own, as for a new one. Nothing that a living
        deployment holds is touched.
        """

    @abstractmethod
    def teardown(self) -> None:
        """Remove everything this deployment made; safe when partial and when called twice."""

    @abstractmethod
    def started(self) -> list[str]:
        """Instances whose container runs now (crashed ones do not)."""

    @abstractmethod
    def task_facts(self) -> dict[str, TaskFacts]:
        """Every instance that has a container (running or crashed): its container, node and pid."""

    # --- runtime changes (the plan holds the new state already) -------------------------------

    @abstractmethod
    def reshape(self, changed: Collection[tuple[str, str]] | None = None) -> None:
        """Apply the plan's current shaping, partitions and firewall rules to every instance.

        `changed` is a hint: only these (instance, network) attachments' shaping
        changed in the plan (a trace's step), so a backend may touch only them;
        it may also apply everything.
        """

    @abstractmethod
    def move(self, instances: list[InstancePlan], source: str, target: str, overlap: float) -> None:
        """Hand the instances over from network `source` to `target`, their processes running on.

        They get an address on `target`, its shaping and its names (everyone's
        names follow), and lose `source`. With `overlap` 0 the old attachment
        goes first (break-before-make); above 0 the new one comes first and the
        old one stays `overlap` seconds more (make-before-break). A backend that
        cannot do it raises BadRequest saying why.
        """

    @abstractmethod
    def scale_out(self, label: str, count: int) -> list[InstancePlan]:
        """`count` new replicas of `label`, addressed, shaped and named before this returns."""

    @abstractmethod
    def scale_in(self, label: str, count: int) -> list[InstancePlan]:
        """Remove `count` replicas of `label`; returns them."""

    @abstractmethod
    def update_resources(self, instance: InstancePlan, cpu_quota: int | None = None,
                         memory: int | None = None) -> None:
        """Change an instance's CPU quota (per its period) or memory limit (bytes), and record it."""

    @abstractmethod
    def set_link_state(self, instances: list[InstancePlan], network: str, up: bool) -> None:
        """Unplug (or plug back) these instances' cable on `network`."""

    @abstractmethod
    def set_switch_link_state(self, link: SwitchLinkPlan, up: bool) -> None:
        """Unplug (or plug back) the cable between two switches; the plan records the state."""

    @abstractmethod
    def crash(self, instances: list[InstancePlan]) -> None:
        """Kill the instances' containers; they stay in the plan, as crashed."""

    @abstractmethod
    def restart(self, instances: list[InstancePlan]) -> None:
        """Start them again, with their addresses, shaping and names."""

    # --- inside instances ---------------------------------------------------------------------

    @abstractmethod
    def run_command(self, instance: InstancePlan, command: str | tuple[str, ...], wait: bool,
                    timeout: float | None) -> dict:
        """A command in the instance's file system; with `wait`, {exit_code, output, timed_out}."""

    @abstractmethod
    def stress(self, instance: InstancePlan, request: Stress) -> list[str]:
        """Start the stress `request` asks for in the instance; returns the command lines.

        Stress runs end with their duration, or with the deployment's teardown.
        """

    # --- monitoring and status ----------------------------------------------------------------

    @abstractmethod
    def samples(self) -> Samples:
        """This round's metrics of every running instance, wherever it runs."""

    def fidelity_readings(self) -> Readings:
        """This round's readings of how faithfully the deployment runs (fogify_net.host.fidelity):
        every machine's CPU (per core, run-queue waits), every running instance's CPU cgroup
        (usage, CFS throttling, CPU pressure) against its quota, every shaped link's HTB classes
        (rate, bytes, drops, backlog) and every delay queue (lateness histogram, kernel drops),
        all cumulative; helpers that are down. The fidelity monitor (monitoring/fidelity.py) takes
        the differences and judges them. This default reports nothing, so a backend without it is
        judged on the sampler and the scenarios only.
        """
        from ..host.fidelity import Readings

        return Readings()

    def _peer_names(self) -> dict[tuple[str, str], str]:
        """(network, address) -> instance, to name the peers of per-peer queues in readings."""
        return {(i.network, str(i.ip)): instance.name for instance in self.plan.instances for i in instance.interfaces}

    @abstractmethod
    def flow_counters(self) -> dict[Flow, tuple[int, int]]:
        """Packets and bytes of every flow counted so far (packet-level monitoring); {} once gone."""

    @abstractmethod
    def instance_pid(self, name: str) -> int | None:
        """The init pid of an instance's container (on this machine), for the status report."""

    @abstractmethod
    def shaping_report(self) -> dict:
        """Backend-specific shaping facts for GET /status/: what is not applied, helper health."""

    # --- state --------------------------------------------------------------------------------

    def _degraded_reasons(self) -> list[str]:
        """Why the deployment does not run as planned: `<instance> <why>` for every lost instance."""
        return [f"{name} {why}" for name, why in sorted(self.lost.items())]

    def _refresh_state(self) -> None:
        """running, or degraded (with why) while `_degraded_reasons` has any; the controller annotates
        each change (DEGRADED, RECOVERED)."""
        if self.state not in ("running", "degraded"):
            return
        reasons = self._degraded_reasons()
        wanted = ("degraded", "; ".join(reasons)) if reasons else ("running", "")
        if (self.state, self.detail) != wanted:
            self._set_state(*wanted)

    def _set_state(self, state: str, detail: str = "") -> None:
        self.state, self.detail = state, detail
        if self._on_state:
            self._on_state(state, detail)
