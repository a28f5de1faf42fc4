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
- Shaping is done by `fogify-net agent` on each node (agent.py), inside each
  task's namespace. A reconcile thread notices tasks it has not shaped (a
  replica Swarm restarted or rescheduled) and shapes them and their peers.
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
a dead task itself), static addresses (Swarm's IPAM assigns them).
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING, Callable

import requests

from ..compile.flows import Flow, flow_ruleset, flows_from_json, monitored, sum_counters
from ..compile.naming import LABEL
from ..compile.netfilter import filter_rules
from ..compile.plan import InstancePlan, InterfacePlan, Plan, add_instances
from ..compile.shaping import interface_shaping
from ..errors import BadRequest, Conflict
from ..model.errors import ModelError
from .agent import direction_to_json

if TYPE_CHECKING:
    from ..actions.stress import StressRunner
    from ..model.actions import Stress
    from ..monitoring.sampler import SampleTarget

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
AGENT_PORT = 5500
CONVERGE_TIMEOUT = 180.0
RECONCILE_INTERVAL = 1.0
SWARM_PORTS = "veth*"  # the tasks' ports on an overlay network's bridge (br0), as Docker names them


class SwarmError(RuntimeError):
    """Swarm did not do what the plan asks (tasks failed, timed out, an agent did not answer)."""


def constraints(placement: tuple[tuple[str, str], ...]) -> list[str]:
    """Swarm placement constraints for a blueprint's `placement` mapping."""
    out = []
    for key, value in placement:
        if key == "hostname":
            out.append(f"node.hostname=={value}")
        elif key == "role":
            out.append(f"node.role=={value}")
        else:
            out.append(f"node.labels.{key}=={value}")
    return out


def _argv(value) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


class SwarmBackend:
    """One deployment of a plan on the Swarm whose manager answers at `manager_url`."""

    def __init__(self, plan: Plan, manager_url: str, agents: dict[str, str] | None = None,
                 agent_port: int = AGENT_PORT, token: str | None = None,
                 on_state: Callable[[str, str], None] | None = None, timeout: float = CONVERGE_TIMEOUT):
        """`agents`: node hostname -> agent URL; a node not named is reached at http://<its address>:<agent_port>."""
        import docker

        self.plan = plan
        try:
            self.client = docker.DockerClient(base_url=manager_url, timeout=60)
        except docker.errors.DockerException as error:
            raise Conflict(f"the Swarm manager at {manager_url} does not answer: {error}") from None
        self.agents = dict(agents or {})
        self.agent_port = agent_port
        self.timeout = timeout
        self.mechanism = "userspace"
        self.state = "created"
        self.detail = ""
        self.crashed: set[str] = set()
        self.counts_flows = False  # packet-level monitoring (/packets/): the agents count on their overlay bridges
        self._node_flows: dict[str, dict[Flow, tuple[int, int]]] = {}  # hostname -> its last counters
        self.lock = threading.RLock()
        self._on_state = on_state
        self._http = requests.Session()
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"
        self._services: dict[str, object] = {}  # label -> docker Service
        self._networks: dict[str, object] = {}  # model network -> docker Network
        self._tasks: dict[str, dict] = {}  # instance name -> {container, node, hostname}
        self._shaped: set[str] = set()  # container ids shaped so far
        self._spec_quota: dict[str, tuple[int, int]] = {}  # label -> (cpu quota, memory) the service starts with
        self._stop = threading.Event()
        self._reconciler: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def check(self) -> None:
        info = self.client.info().get("Swarm", {})
        if not info.get("ControlAvailable"):
            raise Conflict("the Docker endpoint given as manager is not a Swarm manager")
        for blueprint in self.plan.model.blueprints:
            for attachment in blueprint.networks:
                if attachment.ip is not None:
                    raise ModelError(f"x-fogify.topology.{blueprint.label}.networks",
                                     "static addresses are not supported on Swarm (its IPAM assigns them)")
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

    def deploy(self, progress: Progress | None = None) -> None:
        progress = progress or (lambda done, total, what: None)
        with self.lock:
            self._set_state("deploying")
            try:
                for name, network in self.plan.networks.items():
                    self._networks[name] = self._create_network(name, str(network.subnet))
                for blueprint in self.plan.model.blueprints:
                    self._services[blueprint.label] = self._create_service(blueprint.label)
                self._converge(progress)
                self.reshape()
                self.counts_flows = flow_ruleset(self.plan, SWARM_PORTS) is not None
                if self.counts_flows:
                    self.flow_counters()  # the agents start counting now, not one period later
            except BaseException as error:
                log.error("swarm deploy failed, rolling back: %s", error)
                self._set_state("error", str(error))
                try:
                    self.teardown()
                except Exception as cleanup_error:
                    log.error("rollback incomplete: %s", cleanup_error)
                raise
            self._set_state("running")
            self._stop.clear()
            self._reconciler = threading.Thread(target=self._reconcile_loop, name="swarm-reconcile", daemon=True)
            self._reconciler.start()

    def teardown(self) -> None:
        """Services first (their tasks leave the networks), then the networks once they are free."""
        self._stop.set()
        if self._reconciler is not None and self._reconciler is not threading.current_thread():
            self._reconciler.join(10)
        with self.lock:
            containers = [t["container"] for t in self._tasks.values()]
            for node in {t["hostname"] for t in self._tasks.values()}:
                try:
                    self._agent(node, "post", "/forget/", {"containers": containers})
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
            if self.state != "error":
                self._set_state("stopped")

    def started(self) -> list[str]:
        return [name for name in self._tasks if name not in self.crashed]

    # --- Swarm objects ---------------------------------------------------------------------

    def _create_network(self, name: str, subnet: str):
        from docker.types import IPAMConfig, IPAMPool

        return self.client.networks.create(name, driver="overlay", attachable=True, labels={LABEL: "1"},
                                           ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))

    def _create_service(self, label: str):
        from docker.types import EndpointSpec, NetworkAttachmentConfig, Resources, RestartPolicy, ServiceMode

        blueprint = self.plan.model.blueprint(label)
        service = self.plan.model.services[blueprint.service]
        sample = self.plan.instances_of(label)[0] if self.plan.instances_of(label) else None
        if sample is None:  # replicas: 0; the profile is needed all the same
            sample = add_instances(self.plan, label, 1)[0]
            self.plan.instances.remove(sample)
        env = sample.environment()
        env["FOGIFY_INSTANCE"] = "{{.Service.Name}}.{{.Task.Slot}}"
        self._spec_quota[label] = (sample.cpu_quota, sample.memory)
        return self.client.services.create(
            service.image,
            command=_argv(service.entrypoint),
            args=_argv(service.command),
            name=label,
            hostname="{{.Service.Name}}.{{.Task.Slot}}",
            env=[f"{k}={v}" for k, v in env.items()],
            labels={LABEL: "1"},
            container_labels={LABEL: "1", "fogify-net.label": label, **dict(service.labels)},
            networks=[NetworkAttachmentConfig(a.network) for a in blueprint.networks],
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            mode=ServiceMode("replicated", replicas=len(self.plan.instances_of(label))),
            resources=Resources(cpu_limit=round(sample.cpus * 1e9) or None, mem_limit=sample.memory or None),
            constraints=constraints(blueprint.placement) or None,
            restart_policy=RestartPolicy(condition="any", delay=500_000_000),
            stop_grace_period=1_000_000_000,
            workdir=service.working_dir,
            user=service.user,
            cap_add=list(service.cap_add) or None,
        )

    def _running_tasks(self, label: str) -> list[dict]:
        service = self._services[label]
        found = []
        for task in service.tasks(filters={"desired-state": "running"}):
            if task.get("Status", {}).get("State") == "running":
                found.append(task)
        return found

    def _failures(self, label: str) -> list[str]:
        service = self._services[label]
        return sorted({t["Status"].get("Err", "") for t in service.tasks()
                       if t.get("Status", {}).get("State") in ("failed", "rejected") and t["Status"].get("Err")})

    def _converge(self, progress: Progress) -> None:
        """Wait until every label runs as many tasks as the plan has instances, then adopt them."""
        deadline = time.monotonic() + self.timeout
        total = len(self.plan.instances)
        while True:
            running = {label: self._running_tasks(label) for label in self._services}
            done = sum(min(len(tasks), len(self.plan.instances_of(label))) for label, tasks in running.items())
            progress(done, total, "tasks")
            if all(len(tasks) == len(self.plan.instances_of(label)) for label, tasks in running.items()):
                break
            if time.monotonic() > deadline:
                errors = {label: self._failures(label) for label in self._services}
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
            self._tasks[instance.name] = {"container": task["Status"]["ContainerStatus"]["ContainerID"],
                                          "node": node, "hostname": hostnames[node], "task": task["ID"]}
        return gone

    # --- agents ------------------------------------------------------------------------------

    def _agent_url(self, hostname: str) -> str:
        if hostname in self.agents:
            return self.agents[hostname]
        for node in self.client.nodes.list():
            if node.attrs["Description"]["Hostname"] == hostname:
                return f"http://{node.attrs['Status']['Addr']}:{self.agent_port}"
        raise SwarmError(f"no Swarm node {hostname!r}")

    def _agent(self, hostname: str, method: str, path: str, body: dict | None, timeout: float = 60) -> dict:
        url = self._agent_url(hostname).rstrip("/") + path
        try:
            response = self._http.request(method, url, json=body, timeout=timeout)
        except requests.RequestException as error:
            raise SwarmError(f"agent of {hostname} at {url} did not answer: {error}") from error
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise SwarmError(f"agent of {hostname}: {path} answered {response.status_code}: {message}")
        return response.json()

    def _task(self, instance: InstancePlan) -> dict:
        task = self._tasks.get(instance.name)
        if task is None:
            raise Conflict(f"{instance.name} has no running task")
        return task

    # --- runtime changes -------------------------------------------------------------------

    def reshape(self) -> None:
        """Send every node's agent the wanted shaping of its tasks (agents apply only differences)."""
        with self.lock:
            per_node: dict[str, list[dict]] = {}
            uplinks = {(i.name, name): interface_shaping(self.plan, i, i.interface(name)).uplink
                       for name in self.plan.networks for i in self.plan.members(name)}
            for instance in self.plan.instances:
                task = self._tasks.get(instance.name)
                if task is None:
                    continue
                interfaces = []
                for interface in instance.interfaces:
                    shaping = interface_shaping(self.plan, instance, interface)
                    interfaces.append({"network": interface.network,
                                       "network_id": self._networks[interface.network].id,
                                       "subnet": str(self.plan.networks[interface.network].subnet),
                                       "uplink": direction_to_json(shaping.uplink),
                                       # peers' uplink loss toward this task, drawn on its receive path
                                       "senders_loss": self._senders_loss(instance, interface, uplinks),
                                       "downlink": direction_to_json(shaping.downlink)})
                per_node.setdefault(task["hostname"], []).append(
                    {"container": task["container"], "instance": instance.name, "interfaces": interfaces})
            filters = filter_rules(self.plan)
            for hostname, tasks in per_node.items():
                self._agent(hostname, "post", "/shape/", {"tasks": tasks, "filters": filters})
            fresh = [i for i in self.plan.instances
                     if i.name in self._tasks and self._tasks[i.name]["container"] not in self._shaped]
            for instance in fresh:
                self._fresh_task(instance)
            self._shaped = {t["container"] for t in self._tasks.values()}

    def _senders_loss(self, receiver: InstancePlan, interface: InterfacePlan, uplinks: dict) -> list[list]:
        """[sender address, %] of every peer on the network whose uplink toward `receiver` drops."""
        pairs = []
        for sender in self.plan.members(interface.network):
            if sender is not receiver:
                loss = uplinks[(sender.name, interface.network)].toward(interface.ip).loss
                if loss > 0:
                    pairs.append([str(sender.interface(interface.network).ip), loss])
        return pairs

    def _fresh_task(self, instance: InstancePlan) -> None:
        """A task seen for the first time: its changed limits and unplugged links, as the plan holds them."""
        quota, memory = self._spec_quota.get(instance.label, (instance.cpu_quota, instance.memory))
        if (instance.cpu_quota, instance.memory) != (quota, memory):
            self._resources(instance, instance.cpu_quota, instance.memory)
        for interface in instance.interfaces:
            if not interface.up:
                self._link(instance, interface.network, False)

    def _reconcile_loop(self) -> None:
        """Shape tasks Swarm started on its own (a replica that died and was replaced)."""
        while not self._stop.wait(RECONCILE_INTERVAL):
            try:
                with self.lock:
                    if self._stop.is_set():
                        return
                    changed = False
                    before = dict(self._tasks)
                    for label in list(self._services):
                        tasks = self._running_tasks(label)
                        known = {self._tasks[i.name]["task"] for i in self.plan.instances_of(label)
                                 if i.name in self._tasks}
                        if {t["ID"] for t in tasks} != known and len(tasks) == len(self.plan.instances_of(label)):
                            self._adopt(label, tasks)
                            changed = True
                    if changed:
                        log.info("tasks replaced by Swarm; reshaping")
                        self._forget_replaced(before)
                        self.reshape()
            except Exception:
                log.exception("reconciling Swarm tasks failed")

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
        service.reload()
        spec = service.attrs["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        # The spec as it is with only the count changed, like `docker service scale`: docker-py's
        # update rebuilds the task template, and Swarm then replaces every running task.
        api = self.client.api
        api._raise_for_status(api._post_json(api._url("/services/{0}/update", service.id), data=spec,
                                             params={"version": service.version}))
        deadline = time.monotonic() + self.timeout
        while True:
            tasks = self._running_tasks(label)
            if len(tasks) == replicas:
                break
            if time.monotonic() > deadline:
                raise SwarmError(f"{label}: {len(tasks)} of {replicas} tasks after {self.timeout:g}s: "
                                 f"{self._failures(label)}")
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
            self._resources(instance, cpu_quota, memory)
            if cpu_quota:
                instance.cpu_quota = cpu_quota
            if memory:
                instance.memory = memory

    def _resources(self, instance: InstancePlan, cpu_quota: int | None, memory: int | None) -> None:
        task = self._task(instance)
        self._agent(task["hostname"], "post", "/resources/", {
            "container": task["container"], "cpu_quota": cpu_quota, "cpu_period": instance.cpu_period,
            "memory": memory})

    def set_link_state(self, instances: list[InstancePlan], network: str, up: bool) -> None:
        with self.lock:
            for instance in instances:
                instance.interface(network).up = up
                self._link(instance, network, up)

    def _link(self, instance: InstancePlan, network: str, up: bool) -> None:
        task = self._task(instance)
        self._agent(task["hostname"], "post", "/link/", {
            "container": task["container"], "subnet": str(self.plan.networks[network].subnet), "up": up})

    def crash(self, instances: list[InstancePlan]) -> None:
        raise BadRequest("crash is not supported on the Swarm backend (Swarm replaces a dead task at once)")

    def restart(self, instances: list[InstancePlan]) -> None:
        raise BadRequest("restart is not supported on the Swarm backend")

    # --- inside instances ------------------------------------------------------------------

    def run_command(self, instance: InstancePlan, command: str | tuple[str, ...], wait: bool,
                    timeout: float | None) -> dict:
        task = self._task(instance)
        body = {"container": task["container"], "command": command if isinstance(command, str) else list(command),
                "wait": wait, "timeout": timeout}
        return self._agent(task["hostname"], "post", "/exec/", body, timeout=(timeout or 60) + 30)

    def stress(self, instance: InstancePlan, request: Stress, runner: StressRunner) -> list[str]:
        task = self._task(instance)
        body = {"container": task["container"], "cpus": instance.cpus, "duration": request.duration,
                "cpu": request.cpu, "io": request.io, "vm": request.vm, "vm_bytes": request.vm_bytes}
        return self._agent(task["hostname"], "post", "/stress/", body)["commands"]

    # --- monitoring and status -------------------------------------------------------------

    def sample_targets(self) -> list[SampleTarget]:
        return []  # counters live on the nodes: remote_samples asks their agents

    def remote_samples(self) -> dict[str, dict[str, float]]:
        """Every node's agent samples its own tasks, all nodes at once."""
        per_node: dict[str, dict[str, dict]] = {}
        for instance in list(self.plan.instances):
            task = self._tasks.get(instance.name)
            if task is None:
                continue
            per_node.setdefault(task["hostname"], {})[task["container"]] = {
                "instance": instance.name, "cpus": instance.cpus, "memory": instance.memory,
                "networks": {i.network: str(self.plan.networks[i.network].subnet) for i in instance.interfaces}}
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

    def flow_counters(self) -> dict[Flow, tuple[int, int]]:
        """Every node's counters, summed. Each flow is counted on its sender's node only (frames
        from other nodes enter the bridge by vxlan0). A node that does not answer counts as its
        last answer, so that its flows are not counted again from zero when it answers next."""
        ruleset = flow_ruleset(self.plan, SWARM_PORTS)
        if ruleset is None:
            return {}
        networks = [self._networks[name].id for name in sorted(monitored(self.plan)) if name in self._networks]
        nodes = sorted({task["hostname"] for task in self._tasks.values()})
        if not nodes or not networks:
            return {}
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {node: pool.submit(self._agent, node, "post", "/flows/",
                                         {"networks": networks, "ruleset": ruleset}, 10) for node in nodes}
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

    # --- state -------------------------------------------------------------------------------

    def _set_state(self, state: str, detail: str = "") -> None:
        self.state, self.detail = state, detail
        if self._on_state:
            self._on_state(state, detail)


def remove_deployment(manager) -> list[str]:
    """Remove every fogify-net service and overlay network (by label) from a Swarm; what was removed.

    `manager` is a Docker endpoint URL of a Swarm manager, or a DockerClient of one. Services go
    first; a network refuses removal until their tasks have left it, so it is retried.
    """
    import docker

    client = docker.DockerClient(base_url=manager, timeout=60) if isinstance(manager, str) else manager
    removed = []
    for service in client.services.list(filters={"label": f"{LABEL}=1"}):
        service.remove()
        removed.append(f"swarm service {service.name}")
    deadline = time.monotonic() + 120
    for network in client.networks.list(filters={"label": f"{LABEL}=1"}):
        while True:
            try:
                network.remove()
                removed.append(f"swarm network {network.name}")
                break
            except docker.errors.APIError as error:  # "has active endpoints" until the tasks are gone
                if time.monotonic() > deadline:
                    raise SwarmError(f"network {network.name} not removed: {error}") from error
                time.sleep(0.5)
    return removed
