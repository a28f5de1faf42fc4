"""The Swarm backend: the plan as Swarm services on overlay networks, shaped by node agents.

- One attachable overlay network per x-fogify network, with the plan's subnet
  (Fogify let Docker pick /24s and assumed them).
- One service per blueprint, named by its label: replicas, NanoCPUs and memory
  limits from the node profile, FOGIFY_* in the environment (FOGIFY_INSTANCE
  from the task slot), dnsrr endpoints (so `<label>` and `tasks.<label>`
  resolve to task addresses, as in Fogify), placement constraints from the
  blueprint's `placement` (`hostname: h` -> node.hostname==h, `role: r` ->
  node.role==r, any other key -> node.labels.<key>==<value>), else Swarm
  spreads the tasks over the nodes.
- Instances are `<label>.<slot>`: the plan follows Swarm's task slots and the
  addresses Swarm's IPAM gave, so per-peer link rules match real addresses.
- Shaping is done by `fogify-net agent` on each node (agent/), inside each
  task's namespace.
- Docker's events, through the agents (events.py): each node's agent follows
  its dockerd and the backend long-polls it. A task whose container stops
  without us (`docker kill`, OOM, a dockerd restart) makes its instance lost:
  `down` in /status/ with why, the deployment degraded (the controller
  annotates DEGRADED). Swarm then starts a replacement task (a new container
  and namespace, often a new address); the reconcile thread, woken by the
  events (and every RECONCILE_INTERVAL s without them), adopts it and
  re-applies what deploy and the actions installed per task: shaping, filters
  and every peer's per-peer rules, changed CPU and memory limits, unplugged
  links. The instance is up again (RECOVERED).
- A whole node that dies (its machine, or its dockerd and agent): its agent
  stops answering the event poll, and once it has not answered for
  events.NODE_TIMEOUT_S (10 s; a hung connection is found within the poll's
  timeouts, so at most ~13 s after the death), every instance on it is lost,
  `node <host> does not answer since <time>`, and listed as a failed task;
  calls to its agent fail at once (503 for actions that reach it, 409 for one
  that targets a lost instance). Swarm finds the node down by its own
  heartbeat and starts replacements on the other nodes, adopted and shaped as
  above. When the node answers again, its instances whose containers still
  run are up again (re-shaped if its agent restarted); the rest stay with
  their replacements.
- Scaling counts per label, from the plan (Fogify counted the whole stack).
- Metrics come from every node: each agent samples its own tasks, and the
  controller's sampler stores them beside local ones (Fogify's multi-host
  monitoring request failed). Packet-level monitoring too: each agent counts
  the flows its tasks send on the overlay bridge, and the backend sums them.

- Delay and jitter: the user-space delay line on each overlay network's
  bridge on each node (delay.py); rate inside the task; loss on the
  receiver's receive path (a sender's uplink loss by its source address).
  `links` rules apply per peer to all four, as on the local backend.
- Partitions and firewall rules: the local backend's nftables rules
  (compile/netfilter.py), on every task's receive path.

Not done here (refused as actions, with a 400): crash/restart (Swarm replaces
a dead task itself), move (changing a task's networks replaces the task),
static addresses (Swarm's IPAM assigns them); published ports are refused at
deploy (unsupported_topology, naming the field). Traces work: each step is a
reshape, which every agent applies as a difference.

The Swarm objects are made in services.py, the agents reached through
agents.py with the bodies of wire.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

from ...compile.flows import Flow, flows_from_json, monitored, sum_counters
from ...compile.netfilter import filters
from ...compile.plan import InstancePlan, InterfacePlan, Plan, add_instances
from ...compile.shaping import interface_shaping
from ...errors import BadRequest, Conflict
from ...host.fidelity import Readings, name_peers
from ...model.errors import ModelError
from ..base import Backend, Progress, Samples, StateCallback, TaskFacts
from .agents import AGENT_PORT, AgentClient
from .events import NodeEvents
from .services import (
    SwarmError,
    create_network,
    create_service,
    failures,
    remove_deployment,
    running_tasks,
    set_replicas,
)
from .wire import (
    AttachmentShaping,
    ExecRequest,
    FidelityRequest,
    FlowsRequest,
    LinkRequest,
    ResourcesRequest,
    SampleRequest,
    StressRequest,
    TaskShaping,
    TaskState,
    custom_names,
    distributions_to_json,
    filter_to_json,
    readings_from_json,
)

if TYPE_CHECKING:
    from ...model.actions import Stress

log = logging.getLogger(__name__)

CONVERGE_TIMEOUT = 180.0
RECONCILE_INTERVAL = 5.0  # the reconciler asks the manager for tasks this often without events (missed ones)
HURRY_INTERVAL = 0.2  # ... and this often for HURRY_S after an event says a task died or started
HURRY_S = 15.0
SWARM_TMPFS_OPTIONS = ("size", "mode")  # what a Swarm tmpfs mount has (TmpfsOptions: SizeBytes, Mode)


def unsupported_topology(plan: Plan) -> None:
    """Refuse (400, naming the field) what the local backend's multi-hop networks add and Swarm cannot do:
    an overlay network is one switch, and tasks get Swarm's names, addresses and routes."""
    for i, network in enumerate(plan.model.networks.values()):
        if network.switches:
            raise ModelError(f"x-fogify.networks[{i}].switches",
                             "several switches per network are not supported on Swarm (an overlay network is one "
                             "switch); use the local backend")
    for i, blueprint in enumerate(plan.model.blueprints):
        path = f"x-fogify.topology[{i}]"
        for key in ("forwarding", "routes", "single"):
            if getattr(blueprint, key):
                raise ModelError(f"{path}.{key}", f"{key} is not supported on Swarm (tasks are routed and named "
                                 "by Swarm); use the local backend")
        for j, attachment in enumerate(blueprint.networks):
            for key in ("interface", "unnumbered"):
                if getattr(attachment, key):
                    raise ModelError(f"{path}.networks[{j}].{key}", f"{key} is not supported on Swarm")
    for name in sorted({b.service for b in plan.model.blueprints}):
        service = plan.model.services[name]
        if service.security_opt:
            raise ModelError(f"services.{name}.security_opt",
                             "not supported on Swarm (a service has no security options); use the local backend")
        for i, (_, options) in enumerate(service.tmpfs):
            other = [o for o in options.split(",") if o and o.split("=", 1)[0] not in SWARM_TMPFS_OPTIONS]
            if other:
                raise ModelError(f"services.{name}.tmpfs[{i}]", f"on Swarm a tmpfs takes only size and mode, "
                                 f"not {', '.join(other)}; use the local backend")
        if service.ports:
            raise ModelError(f"services.{name}.ports",
                             "published ports are not supported on Swarm: Swarm publishes through its ingress "
                             "network, a path beside the shaped overlays, and fogify-net's relay runs on one "
                             "machine; reach the service on its emulated networks, or use the local backend")


class SwarmBackend(Backend):
    """One deployment of a plan on the Swarm whose manager answers at `manager_url`."""

    name = "swarm"
    mechanism = "userspace"

    def __init__(self, plan: Plan, on_state: StateCallback | None = None,
                 manager_url: str = "unix:///var/run/docker.sock", agents: dict[str, str] | None = None,
                 agent_port: int = AGENT_PORT, token: str | None = None, tokens: dict[str, str] | None = None,
                 timeout: float = CONVERGE_TIMEOUT):
        """`agents`: node hostname -> agent URL; a node not named is reached at http://<its address>:<agent_port>.
        `tokens`: node hostname -> its agent's token; `token` for the others.

        counts_flows (packet-level monitoring): the agents count on their overlay bridges.
        """
        import docker

        super().__init__(plan, on_state)
        try:
            self.client = docker.DockerClient(base_url=manager_url, timeout=60)
        except docker.errors.DockerException as error:
            raise Conflict(f"the Swarm manager at {manager_url} does not answer: {error}") from None
        self.agents = AgentClient(self.client, agents, agent_port, token, tokens)
        self.timeout = timeout
        self._node_flows: dict[str, dict[Flow, tuple[int, int]]] = {}  # hostname -> its last counters
        self._services: dict[str, object] = {}  # label -> docker Service
        self._networks: dict[str, object] = {}  # model network -> docker Network
        self._tasks: dict[str, dict] = {}  # instance name -> {container, node, hostname}
        self._shaped: set[str] = set()  # container ids shaped so far
        self._spec_quota: dict[str, tuple[int, int]] = {}  # label -> (cpu quota, memory) the service starts with
        self._stop = threading.Event()
        self._reconciler: threading.Thread | None = None
        self._wake = threading.Event()  # an event came: the reconciler looks at once
        self._hurry_until = 0.0  # monotonic time until which the reconciler looks every HURRY_INTERVAL s
        self._watchers: dict[str, NodeEvents] = {}  # node hostname -> the poll of its agent's task events
        self._lost_container: dict[str, str] = {}  # lost instance -> the container that stopped
        self._silent: dict[str, str] = {}  # node hostname -> since when its agent does not answer

    # --- life cycle ---------------------------------------------------------------------------

    @classmethod
    def remove_remains(cls, manager_url: str = "unix:///var/run/docker.sock", **_options) -> list[str]:
        """fogify-net's services and networks on the Swarm (one deployment per Swarm, as on one machine)."""
        return remove_deployment(manager_url)

    def check(self) -> None:
        info = self.client.info().get("Swarm", {})
        if not info.get("ControlAvailable"):
            raise Conflict("the Docker endpoint given as manager is not a Swarm manager")
        for blueprint in self.plan.model.blueprints:
            for attachment in blueprint.networks:
                if attachment.ip is not None:
                    raise ModelError(f"x-fogify.topology.{blueprint.label}.networks",
                                     "static addresses are not supported on Swarm (its IPAM assigns them)")
        unsupported_topology(self.plan)
        existing = {s.name for s in self.client.services.list()}
        clash = sorted(existing & {b.label for b in self.plan.model.blueprints})
        if clash:
            raise Conflict(f"Swarm services {', '.join(clash)} exist already; run `fogify-net cleanup --swarm ...`")
        networks = {n.name for n in self.client.networks.list()}
        clash = sorted(networks & set(self.plan.networks))
        if clash:
            raise Conflict(f"Docker networks {', '.join(clash)} exist already")
        for name in sorted({i.service.name for i in self.plan.instances}):
            image = self.plan.model.services[name].image
            try:
                self.client.images.get(image)
            except Exception:
                raise ModelError(f"services.{name}.image", f"image {image!r} is not on the Swarm manager") from None

    def _bring_up(self, progress: Progress) -> None:
        for name, network in self.plan.networks.items():
            self._networks[name] = create_network(self.client, name, str(network.subnet))
        for blueprint in self.plan.model.blueprints:
            service, quota = create_service(self.client, self.plan, blueprint.label)
            self._services[blueprint.label], self._spec_quota[blueprint.label] = service, quota
        self._converge(progress)
        self.reshape()
        self.counts_flows = bool(monitored(self.plan))
        if self.counts_flows:
            self.flow_counters()  # the agents start counting now, not one period later

    def _after_bring_up(self) -> None:
        self._stop.clear()
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="swarm-reconcile", daemon=True)
        self._reconciler.start()
        with self.lock:
            self._watch_nodes()

    def teardown(self) -> None:
        """Services first (their tasks leave the networks), then the networks once they are free."""
        self._stop.set()
        self._wake.set()
        if self._reconciler is not None and self._reconciler is not threading.current_thread():
            self._reconciler.join(10)
        with self.lock:
            containers = [t["container"] for t in self._tasks.values()]
            tasked = {t["hostname"] for t in self._tasks.values()}
            for node in sorted(tasked | set(self._watchers)):
                try:  # (forget also ends the node's waiting event poll)
                    self._agent(node, "post", "/forget/", {"containers": containers})
                    if node in tasked:
                        self._agent(node, "delete", "/stress/", None)
                except SwarmError as error:
                    log.warning("agent on %s: %s", node, error)
            remove_deployment(self.client)
            self._services.clear()
            self._networks.clear()
            self._tasks.clear()
            self._node_flows.clear()
            self.counts_flows = False
            self._shaped.clear()
            self.lost.clear()
            self._lost_container.clear()
            self._silent.clear()
            if self.state != "error":
                self._set_state("stopped")
        for watcher in self._watchers.values():  # their polls return at the nudge of /forget/
            watcher.join(5)
        self._watchers.clear()

    def started(self) -> list[str]:
        return [name for name in list(self._tasks) if name not in self.crashed and not self._down(name)]

    def task_facts(self) -> dict[str, TaskFacts]:
        """The Swarm tasks that hold the instances now (ids, nodes and containers are Swarm's own); a
        lost instance's is its dead task (`failed`) until Swarm's replacement is adopted."""
        return {name: TaskFacts(id=task["task"], node_id=task["node"], container_id=task["container"],
                                pid=0 if self._down(name) else task.get("pid", 0),
                                state="failed" if self._down(name) else "running", created=task.get("created", ""))
                for name, task in list(self._tasks.items())}

    def _down(self, name: str) -> bool:
        """The instance's current task is the one whose container stopped (not yet replaced)."""
        dead = self._lost_container.get(name)
        return dead is not None and self._tasks.get(name, {}).get("container") == dead

    # --- Swarm tasks --------------------------------------------------------------------------

    def _converge(self, progress: Progress) -> None:
        """Wait until every label runs as many tasks as the plan has instances, then adopt them."""
        deadline = time.monotonic() + self.timeout
        total = len(self.plan.instances)
        while True:
            running = {label: running_tasks(self._services[label]) for label in self._services}
            done = sum(min(len(tasks), len(self.plan.instances_of(label))) for label, tasks in running.items())
            progress(done, total, "tasks")
            if all(len(tasks) == len(self.plan.instances_of(label)) for label, tasks in running.items()):
                break
            if time.monotonic() > deadline:
                errors = {label: failures(self._services[label]) for label in self._services}
                raise SwarmError(f"{done} of {total} tasks running after {self.timeout:g}s; "
                                 f"errors: {{{', '.join(f'{k}: {v}' for k, v in errors.items() if v)}}}")
            time.sleep(0.2)
        for label, tasks in running.items():
            self._adopt(label, tasks)

    def _adopt(self, label: str, tasks: list[dict]) -> list[InstancePlan]:
        """Make the plan's instances of `label` the running tasks: names from slots, addresses from IPAM.

        Returns the instances that no task holds any more (Swarm chose which to stop on a scale-in).
        """
        by_slot = {int(t["Slot"]): t for t in tasks}
        instances = self.plan.instances_of(label)
        free = sorted(set(by_slot) - {i.slot for i in instances})
        gone = []
        for instance in instances:
            if instance.slot not in by_slot:
                if free:  # a planned replica Swarm gave another slot
                    instance.slot = free.pop(0)
                    instance.name = f"{label}.{instance.slot}"
                else:
                    gone.append(instance)
        for instance in gone:
            self.plan.instances.remove(instance)
        current = {i.name for i in self.plan.instances_of(label)}
        for name in [n for n in self._tasks if n.rsplit(".", 1)[0] == label and n not in current]:
            del self._tasks[name]
        hostnames: dict[str, str] = {}
        for instance in self.plan.instances_of(label):
            task = by_slot[instance.slot]
            node = task["NodeID"]
            if node not in hostnames:
                hostnames[node] = self.client.nodes.get(node).attrs["Description"]["Hostname"]
            addresses = {a["Network"]["Spec"]["Name"]: a["Addresses"][0] for a in task.get("NetworksAttachments", [])}
            for interface in instance.interfaces:
                if interface.network in addresses:
                    interface.ip = IPv4Address(IPv4Interface(addresses[interface.network]).ip)
            status = task["Status"]
            self._tasks[instance.name] = {"container": status["ContainerStatus"]["ContainerID"],
                                          "node": node, "hostname": hostnames[node], "task": task["ID"],
                                          "pid": int(status["ContainerStatus"].get("PID") or 0),
                                          "created": task.get("CreatedAt", "")}
        return gone

    # --- agents ------------------------------------------------------------------------------

    def _agent(self, hostname: str, method: str, path: str, body: dict | None, timeout: float = 60) -> dict:
        return self.agents.call(hostname, method, path, body, timeout)

    def _task(self, instance: InstancePlan) -> dict:
        task = self._tasks.get(instance.name)
        if task is None:
            raise Conflict(f"{instance.name} has no running task")
        if self._down(instance.name):
            raise Conflict(f"{instance.name} {self.lost.get(instance.name, 'is down')}; Swarm has not replaced it yet")
        return task

    # --- runtime changes -------------------------------------------------------------------

    def reshape(self, changed: Collection[tuple[str, str]] | None = None) -> None:
        """Send every node's agent the wanted shaping of its tasks (agents apply only differences).

        `changed` is not used: each agent compares with what it applied and changes only that.
        """
        with self.lock:
            per_node: dict[str, list[TaskShaping]] = {}
            uplinks = {(i.name, name): interface_shaping(self.plan, i, i.interface(name)).uplink
                       for name in self.plan.networks for i in self.plan.members(name)}
            for instance in self.plan.instances:
                task = self._tasks.get(instance.name)
                if task is None or self._down(instance.name):  # (its replacement gets the plan's shaping)
                    continue
                interfaces = []
                for interface in instance.interfaces:
                    shaping = interface_shaping(self.plan, instance, interface)
                    interfaces.append(AttachmentShaping(
                        interface.network, self._networks[interface.network].id,
                        self.plan.networks[interface.network].subnet, shaping.uplink, shaping.downlink,
                        # peers' uplink loss toward this task, drawn on its receive path
                        self._senders_loss(instance, interface, uplinks)))
                wanted = TaskShaping(task["container"], instance.name, tuple(interfaces))
                per_node.setdefault(task["hostname"], []).append(wanted)
            rules = [filter_to_json(f) for f in filters(self.plan)]
            for hostname, tasks in per_node.items():
                tables = {name: self.plan.distributions[name] for name in sorted(custom_names(tasks))}
                self._agent(hostname, "post", "/shape/", {"tasks": [t.to_json() for t in tasks], "filters": rules,
                                                          "distributions": distributions_to_json(tables)})
            fresh = [i for i in self.plan.instances
                     if i.name in self._tasks and self._tasks[i.name]["container"] not in self._shaped]
            for instance in fresh:
                self._fresh_task(instance)
            self._shaped = {t["container"] for t in self._tasks.values()}

    def _senders_loss(self, receiver: InstancePlan, interface: InterfacePlan,
                      uplinks: dict) -> tuple[tuple[str, float], ...]:
        """(sender address, %) of every peer on the network whose uplink toward `receiver` drops."""
        pairs = []
        for sender in self.plan.members(interface.network):
            if sender is not receiver:
                loss = uplinks[(sender.name, interface.network)].toward(interface.ip).loss
                if loss > 0:
                    pairs.append((str(sender.interface(interface.network).ip), loss))
        return tuple(pairs)

    def _fresh_task(self, instance: InstancePlan) -> None:
        """A task seen for the first time: its changed limits and unplugged links, as the plan holds them."""
        quota, memory = self._spec_quota.get(instance.label, (instance.cpu_quota, instance.memory))
        if (instance.cpu_quota, instance.memory) != (quota, memory):
            self._resources(instance, instance.cpu_quota, instance.memory)
        for interface in instance.interfaces:
            if not interface.up:
                self._link(instance, interface.network, False)

    def _reconcile_loop(self) -> None:
        """Adopt and shape tasks Swarm started on its own (a replica that died and was replaced): at
        once after an agent's event, every HURRY_INTERVAL s for a while after it, else every
        RECONCILE_INTERVAL s (a missed event, a node whose agent is not followed yet)."""
        while not self._stop.is_set():
            hurry = time.monotonic() < self._hurry_until
            self._wake.wait(HURRY_INTERVAL if hurry else RECONCILE_INTERVAL)
            self._wake.clear()
            try:
                with self.lock:
                    if self._stop.is_set():
                        return
                    self._reconcile()
            except Exception:
                log.exception("reconciling Swarm tasks failed")

    def _reconcile(self) -> None:
        """The manager's running tasks against ours: adopt replacements, shape what is not shaped yet,
        and bring back lost instances whose replacement is shaped."""
        changed = False
        before = dict(self._tasks)
        for label in list(self._services):
            tasks = running_tasks(self._services[label])
            known = {self._tasks[i.name]["task"] for i in self.plan.instances_of(label) if i.name in self._tasks}
            if {t["ID"] for t in tasks} != known and len(tasks) == len(self.plan.instances_of(label)):
                self._adopt(label, tasks)
                changed = True
        if changed:
            log.info("tasks replaced by Swarm; reshaping")
            self._forget_replaced(before)
        if changed or any(t["container"] not in self._shaped for t in self._tasks.values()):
            self.reshape()
        for name, dead in list(self._lost_container.items()):
            task = self._tasks.get(name)
            if task is None or (task["container"] != dead and task["container"] in self._shaped):
                if task is not None:
                    log.info("%s runs again (task %s on %s), shaped as planned", name, task["task"][:12],
                             task["hostname"])
                self.lost.pop(name, None)
                del self._lost_container[name]
        self._refresh_state()
        self._watch_nodes()

    def _watch_nodes(self) -> None:
        """Follow the task events of every node that runs a task of ours (once per node)."""
        if self._stop.is_set():
            return
        for hostname in sorted({t["hostname"] for t in self._tasks.values()} - set(self._watchers)):
            watcher = NodeEvents(self.agents, hostname, self._observe, self._stop, self._node_silent)
            self._watchers[hostname] = watcher
            watcher.start()

    def _observe(self, hostname: str, states: list[TaskState], full: bool, restarted: bool = False) -> None:
        """What a node's agent saw of our tasks (`full`: every task of ours on that node). An instance
        whose container stopped is lost, with the reason its daemon gives, until the reconciler has
        adopted and shaped Swarm's replacement; a stop or a start wakes the reconciler. An agent that
        `restarted` has lost what the last one installed (its delay helpers ended with it): the
        reconciler shapes that node's tasks again."""
        with self.lock:
            if self._stop.is_set() or self.state not in ("running", "degraded"):
                return
            if restarted:
                log.warning("the agent of %s restarted: shaping its tasks again", hostname)
                self._shaped -= {task["container"] for task in self._tasks.values() if task["hostname"] == hostname}
            seen = {state.container: state for state in states}
            for name, task in list(self._tasks.items()):  # a silent node answers again, its task still runs
                state = seen.get(task["container"])
                if (state is not None and state.running and self._lost_container.get(name) == task["container"]
                        and self.lost.get(name, "").startswith(f"node {hostname} does not answer")):
                    log.info("%s runs again: node %s answers, its task still runs", name, hostname)
                    self.lost.pop(name, None)
                    del self._lost_container[name]
            for name, task in list(self._tasks.items()):
                state = seen.get(task["container"])
                if state is not None and not state.running:
                    reason = state.reason
                elif state is None and full and task["hostname"] == hostname:
                    reason = "was removed from its node"
                else:
                    continue
                silent = self.lost.get(name, "").startswith(f"node {hostname} does not answer")
                if name not in self.lost or silent:  # (its node answers again: now the daemon's reason)
                    log.warning("%s %s without fogify-net (task %s on %s)", name, reason, task["task"][:12], hostname)
                    self.lost[name] = reason
                    self._lost_container[name] = task["container"]
            known = {task["container"] for task in self._tasks.values()}
            if restarted or self._lost_container or any(state.running and state.container not in known
                                                        for state in states):
                self._hurry_until = time.monotonic() + HURRY_S
                self._wake.set()
            self._refresh_state()

    def _node_silent(self, hostname: str, since: str | None) -> None:
        """The agent of `hostname` has not answered since `since` (None: it answers again). Every
        instance on it is lost until Swarm's replacement is adopted, or its node answers with its
        container running (_observe)."""
        with self.lock:
            if self._stop.is_set() or self.state not in ("running", "degraded"):
                return
            if since is None:
                self._silent.pop(hostname, None)
                return
            self._silent[hostname] = since
            reason = f"node {hostname} does not answer since {since}"
            for name, task in self._tasks.items():
                if task["hostname"] == hostname and name not in self.lost:
                    log.warning("%s is down: %s (task %s)", name, reason, task["task"][:12])
                    self.lost[name] = reason
                    self._lost_container[name] = task["container"]
            self._hurry_until = time.monotonic() + HURRY_S
            self._wake.set()
            self._refresh_state()

    def _forget_replaced(self, before: dict[str, dict]) -> None:
        """Tell the agents which of their tasks are gone (scaled in, or replaced by Swarm)."""
        current = {t["container"] for t in self._tasks.values()}
        per_node: dict[str, list[str]] = {}
        for task in before.values():
            if task["container"] not in current:
                per_node.setdefault(task["hostname"], []).append(task["container"])
        for hostname, containers in per_node.items():
            try:
                self._agent(hostname, "post", "/forget/", {"containers": containers})
            except SwarmError as error:
                log.warning("agent of %s: %s", hostname, error)

    def _scale(self, label: str, replicas: int) -> list[InstancePlan]:
        service = self._services.get(label)
        if service is None:
            raise BadRequest(f"unknown label {label!r}")
        set_replicas(self.client, service, replicas)
        deadline = time.monotonic() + self.timeout
        while True:
            tasks = running_tasks(self._services[label])
            if len(tasks) == replicas:
                break
            if time.monotonic() > deadline:
                raise SwarmError(f"{label}: {len(tasks)} of {replicas} tasks after {self.timeout:g}s: "
                                 f"{failures(self._services[label])}")
            time.sleep(0.2)
        return self._adopt(label, tasks)

    def scale_out(self, label: str, count: int) -> list[InstancePlan]:
        """Per label: the service's replicas become this label's instances plus `count`."""
        with self.lock:
            before = {i.name for i in self.plan.instances_of(label)}
            added = add_instances(self.plan, label, count)
            try:
                self._scale(label, len(self.plan.instances_of(label)))
            except BaseException:
                for instance in added:
                    if instance in self.plan.instances:
                        self.plan.instances.remove(instance)
                raise
            self.reshape()
            return [i for i in self.plan.instances_of(label) if i.name not in before]

    def scale_in(self, label: str, count: int) -> list[InstancePlan]:
        """Swarm chooses which tasks stop; the plan drops the instances whose slots are gone."""
        with self.lock:
            replicas = max(0, len(self.plan.instances_of(label)) - count)
            gone_containers = {n: t["container"] for n, t in self._tasks.items() if n.rsplit(".", 1)[0] == label}
            before = dict(self._tasks)
            removed = self._scale(label, replicas)
            for instance in removed:
                self._shaped.discard(gone_containers.get(instance.name))
            self._forget_replaced(before)
            self.reshape()
            return removed

    def update_resources(self, instance: InstancePlan, cpu_quota: int | None = None,
                         memory: int | None = None) -> None:
        with self.lock:
            if not self._down(instance.name):  # else its replacement starts with the plan's (_fresh_task)
                self._resources(instance, cpu_quota, memory)
            if cpu_quota:
                instance.cpu_quota = cpu_quota
            if memory:
                instance.memory = memory

    def _resources(self, instance: InstancePlan, cpu_quota: int | None, memory: int | None) -> None:
        task = self._task(instance)
        request = ResourcesRequest(task["container"], cpu_quota, instance.cpu_period, memory)
        self._agent(task["hostname"], "post", "/resources/", request.to_json())

    def set_link_state(self, instances: list[InstancePlan], network: str, up: bool) -> None:
        with self.lock:
            for instance in instances:
                instance.interface(network).up = up
                if not self._down(instance.name):  # else at its replacement (_fresh_task)
                    self._link(instance, network, up)

    def _link(self, instance: InstancePlan, network: str, up: bool) -> None:
        task = self._task(instance)
        request = LinkRequest(task["container"], str(self.plan.networks[network].subnet), up)
        self._agent(task["hostname"], "post", "/link/", request.to_json())

    def set_switch_link_state(self, link, up: bool) -> None:
        raise BadRequest("switch links are not supported on the Swarm backend (an overlay network is one switch)")

    def crash(self, instances: list[InstancePlan]) -> None:
        raise BadRequest("crash is not supported on the Swarm backend (Swarm replaces a dead task at once)")

    def move(self, instances: list[InstancePlan], source: str, target: str, overlap: float) -> None:
        raise BadRequest("move is not supported on the Swarm backend: a task's networks are fixed when Swarm "
                         "creates it, and changing them (service update --network-add/--network-rm) replaces "
                         "the task, so its processes would not keep running")

    def restart(self, instances: list[InstancePlan]) -> None:
        raise BadRequest("restart is not supported on the Swarm backend")

    # --- inside instances ------------------------------------------------------------------

    def run_command(self, instance: InstancePlan, command: str | tuple[str, ...], wait: bool,
                    timeout: float | None) -> dict:
        task = self._task(instance)
        request = ExecRequest(task["container"], command, wait, timeout)
        return self._agent(task["hostname"], "post", "/exec/", request.to_json(), timeout=(timeout or 60) + 30)

    def stress(self, instance: InstancePlan, request: Stress) -> list[str]:
        task = self._task(instance)
        body = StressRequest(task["container"], instance.cpus, request).to_json()
        return self._agent(task["hostname"], "post", "/stress/", body)["commands"]

    # --- monitoring and status -------------------------------------------------------------

    def samples(self) -> Samples:
        """Every node's agent samples its own tasks, all nodes at once."""
        per_node: dict[str, dict[str, dict]] = {}
        for instance in list(self.plan.instances):
            task = self._tasks.get(instance.name)
            if task is None or self._down(instance.name):
                continue
            request = SampleRequest(instance.name, instance.cpus, instance.memory,
                                    {i.network: str(self.plan.networks[i.network].subnet) for i in instance.interfaces})
            per_node.setdefault(task["hostname"], {})[task["container"]] = request.to_json()
        if not per_node:
            return {}
        samples: dict[str, dict[str, float]] = {}
        with ThreadPoolExecutor(max_workers=len(per_node)) as pool:
            futures = {pool.submit(self._agent, node, "post", "/samples/", {"containers": containers}, 5): node
                       for node, containers in per_node.items()}
            for future, node in futures.items():
                try:
                    samples.update(future.result())
                except SwarmError as error:
                    log.warning("no samples from %s this round: %s", node, error)
        return samples

    def fidelity_readings(self) -> Readings:
        """Every node's agent reads its machine, its tasks' cgroups and queues, and its delay lines,
        all nodes at once; a node that does not answer is left out of the round."""
        per_node: dict[str, dict[str, SampleRequest]] = {}
        for instance in list(self.plan.instances):
            task = self._tasks.get(instance.name)
            if task is not None and not self._down(instance.name):
                per_node.setdefault(task["hostname"], {})[task["container"]] = SampleRequest(
                    instance.name, instance.cpus, instance.memory,
                    {i.network: str(self.plan.networks[i.network].subnet) for i in instance.interfaces})
        readings = Readings()
        if not per_node:
            return readings
        with ThreadPoolExecutor(max_workers=len(per_node)) as pool:
            futures = {node: pool.submit(self._agent, node, "post", "/fidelity/",
                                         FidelityRequest(node, containers).to_json(), 5)
                       for node, containers in per_node.items()}
            for node, future in futures.items():
                try:
                    readings.merge(readings_from_json(future.result()))
                except SwarmError as error:
                    log.warning("no fidelity readings from %s this round: %s", node, error)
        name_peers(readings, self._peer_names())
        return readings

    def flow_counters(self) -> dict[Flow, tuple[int, int]]:
        """Every node's counters, summed. Each flow is counted on its sender's node only (frames
        from other nodes enter the bridge by vxlan0). A node that does not answer counts as its
        last answer, so that its flows are not counted again from zero when it answers next."""
        names = sorted(monitored(self.plan))
        networks = [self._networks[name].id for name in names if name in self._networks]
        nodes = sorted({task["hostname"] for task in self._tasks.values()} - set(self._silent))
        if not nodes or not networks:
            return {}
        request = FlowsRequest(tuple(networks), tuple(self.plan.networks[name].subnet for name in names)).to_json()
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {node: pool.submit(self._agent, node, "post", "/flows/", request, 10) for node in nodes}
            for node, future in futures.items():
                try:
                    self._node_flows[node] = flows_from_json(future.result()["flows"])
                except SwarmError as error:
                    log.warning("no flow counters from %s this round: %s", node, error)
        return sum_counters(self._node_flows.values())

    def instance_pid(self, name: str) -> int | None:
        return None  # a pid on another machine means nothing here

    def placement(self) -> dict[str, str]:
        """Instance -> Swarm node hostname."""
        return {name: task["hostname"] for name, task in self._tasks.items()}

    def shaping_report(self) -> dict:
        return {"not_applied": [], "backend": "swarm", "placement": self.placement()}
