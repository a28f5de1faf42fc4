"""What the controller, the actions, the scenarios and the monitoring ask of a deployment.

One interface, several backends (as Kathara's IManager with its Docker and
Kubernetes managers): `fogify_net.emulation.network.Emulation` runs the plan
as a Mininet network on this machine; `fogify_net.swarm.backend.SwarmBackend`
runs it as Swarm services over overlay networks on a cluster. Nothing above
this interface knows which one runs.

Every runtime change goes into the plan first (`backend.plan`), then the
backend applies it; so the plan is always the current state, whichever backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .actions.stress import StressRunner
    from .compile.flows import Flow
    from .compile.plan import InstancePlan, Plan
    from .model.actions import Stress
    from .monitoring.sampler import SampleTarget

Progress = Callable[[int, int, str], None]
StateCallback = Callable[[str, str], None]

BACKENDS = ("local", "swarm")


@runtime_checkable
class Backend(Protocol):
    """One deployment of a plan. All methods but the queries may block for seconds."""

    plan: Plan
    mechanism: str  # how delay and loss are made: "netem", "userspace" or "rate-only"
    state: str  # created, deploying, running, degraded, error, stopped
    detail: str  # why, when degraded or error
    crashed: set[str]  # instances stopped by the crash action, until they restart
    counts_flows: bool  # its networks count flows for packet-level monitoring (/packets/)

    # --- life cycle ---------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse at once what cannot deploy (missing images, leftovers): ModelError or Conflict."""

    def deploy(self, progress: Progress | None = None) -> None:
        """Bring the whole plan up, or raise after removing what was made."""

    def teardown(self) -> None:
        """Remove everything this deployment made; safe when partial and when called twice."""

    def started(self) -> list[str]:
        """Instances whose container runs now (crashed ones do not)."""

    # --- runtime changes (the plan holds the new state already) -------------------------------

    def reshape(self) -> None:
        """Apply the plan's current shaping, partitions and firewall rules to every instance."""

    def scale_out(self, label: str, count: int) -> list[InstancePlan]:
        """`count` new replicas of `label`, addressed, shaped and named before this returns."""

    def scale_in(self, label: str, count: int) -> list[InstancePlan]:
        """Remove the `count` highest slots of `label`; returns them."""

    def update_resources(self, instance: InstancePlan, cpu_quota: int | None = None,
                         memory: int | None = None) -> None:
        """Change an instance's CPU quota (per its period) or memory limit (bytes), and record it."""

    def set_link_state(self, instances: list[InstancePlan], network: str, up: bool) -> None:
        """Unplug (or plug back) these instances' cable on `network`."""

    def crash(self, instances: list[InstancePlan]) -> None:
        """Kill the instances' containers; they stay in the plan, as crashed."""

    def restart(self, instances: list[InstancePlan]) -> None:
        """Start them again, with their addresses, shaping and names."""

    # --- inside instances ---------------------------------------------------------------------

    def run_command(self, instance: InstancePlan, command: str | tuple[str, ...], wait: bool,
                    timeout: float | None) -> dict:
        """A command in the instance's file system; with `wait`, {exit_code, output, timed_out}."""

    def stress(self, instance: InstancePlan, request: Stress, runner: StressRunner) -> list[str]:
        """Start the stress `request` asks for in the instance; returns the command lines."""

    # --- monitoring and status ----------------------------------------------------------------

    def sample_targets(self) -> list[SampleTarget]:
        """What the sampler reads this round: the running instances' counters."""

    def flow_counters(self) -> dict[Flow, tuple[int, int]]:
        """Packets and bytes of every flow counted so far (packet-level monitoring)."""

    def remote_samples(self) -> dict[str, dict[str, float]]:
        """Metrics measured on other machines this round, by instance (Swarm agents); {} when local."""

    def instance_pid(self, name: str) -> int | None:
        """The init pid of an instance's container (on its host), for the status report."""

    def shaping_report(self) -> dict:
        """Backend-specific shaping facts for GET /status/: what is not applied, helper health."""
