"""The agent's state and work on its node: the tasks it shaped, its delay lines, counters, stress."""

from __future__ import annotations

import logging
import threading
from ipaddress import IPv4Network
from pathlib import Path

import docker

from ....compile.flows import (
    FLOW_SET,
    FLOW_TABLE,
    Flow,
    flow_ruleset_for,
    flow_teardown,
    parse_flow_set,
    sum_counters,
)
from ....compile.netfilter import Filter
from ....compile.shaping import DirectionShaping, InterfaceShaping
from ....compile.tc import class_peers, needs_qdisc
from ....host.cgroups import cgroup_dirs
from ....host.command import run_command
from ....host.counters import CounterReader, SampleTarget
from ....host.delayline import DelayLineError
from ....host.fidelity import HostCpuReader, InstanceCpuReader, LinkTarget, Readings, read_link_queues
from ....host.kernel import KernelError, in_netns, run
from ....host.stress import StressRunner
from ....host.tcstats import ClassReader
from ....model.schema import DelayDistribution
from .. import tasks
from ..delay import NetworkDelay, in_namespace, network_namespace
from ..wire import (
    SWARM_PORTS,
    ExecRequest,
    FidelityRequest,
    FlowsRequest,
    LinkRequest,
    ResourcesRequest,
    SampleRequest,
    StressRequest,
    TaskShaping,
)
from .events import TaskEvents
from .shaping import IFB, Installed, loss_ruleset, net_dev, shaping_commands

log = logging.getLogger(__name__)

class Agent:
    """The node's tasks and what is installed in them; every method is one HTTP request."""

    def __init__(self, docker_url: str | None = None, run_dir: str | Path = "/run/fogify-net",
                 exec_root: str | Path = "/var/run/docker"):
        self.client = docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
        self.installed: dict[tuple[str, str], Installed] = {}  # (container id, network) -> state
        self.stress = StressRunner()
        self.lock = threading.Lock()
        self.counters = CounterReader()  # the tasks' open counter files
        self.run_dir = Path(run_dir)
        self.exec_root = exec_root  # the daemon's --exec-root: where its network namespaces are
        self.delays: dict[str, NetworkDelay] = {}  # overlay network id -> its delay line on this node
        self.rulesets: dict[str, str] = {}  # container id -> the nft ruleset installed in its namespace
        self.counting: set[str] = set()  # overlay namespaces where our flow table counts
        self.distributions: dict[str, DelayDistribution] = {}  # custom delay tables the shaping named so far
        self._host_cpu: HostCpuReader | None = None  # fidelity readers, opened at the first reading
        self._instance_cpu: InstanceCpuReader | None = None
        self._classes = ClassReader()
        self.events = TaskEvents(self.client)  # its tasks' deaths and starts, for the controller (serve starts it)

    def _container(self, container_id: str):
        """The container, if it is one of fogify-net's Swarm tasks (our label on a Swarm task of the
        service its label names); else PermissionError (a 403): the agent acts on nothing else."""
        container = self.client.containers.get(container_id)
        if not tasks.is_ours(container.labels or {}):
            raise PermissionError(f"container {container_id[:12]} is not a task of fogify-net")
        return container

    def _pid(self, container_id: str) -> int:
        container = self._container(container_id)
        pid = int(container.attrs["State"].get("Pid") or 0)
        if not pid:
            raise LookupError(f"container {container_id[:12]} does not run")
        return pid

    def info(self) -> dict:
        swarm = self.client.info().get("Swarm", {})
        return {"node_id": swarm.get("NodeID"), "hostname": self.client.info().get("Name"),
                "tasks": [t.instance for t in tasks.local_tasks(self.client)]}

    def shape(self, wanted: list[TaskShaping], filters: list[Filter] | None = None,
              distributions: dict[str, DelayDistribution] | None = None) -> dict:
        """Install the wanted shaping of every given task, and the partition and firewall rules
        `filters` (rendered here, from data) in each; {instance: {network: device}}. `distributions`
        are the tables of the custom delay distributions the shaping names."""
        rules = tuple(f.render() for f in filters or ())
        applied: dict[str, dict[str, str]] = {}
        delayed: set[str] = set()
        with self.lock:
            self.distributions.update(distributions or {})
            for task in wanted:
                try:
                    pid = self._pid(task.container)
                except (LookupError, docker.errors.NotFound) as error:
                    # died since the controller looked (its events tell it): the other tasks are shaped all the same
                    log.info("%s not shaped: %s", task.instance, error)
                    continue
                downlinks: dict[str, DirectionShaping] = {}
                senders: dict[str, list[tuple[str, float]]] = {}
                ip_lines: list[str] = []
                tc_lines: list[str] = []
                for interface in task.interfaces:
                    key = (task.container, interface.network)
                    installed = self.installed.get(key)
                    if installed is None:
                        device = tasks.attachment(pid, interface.subnet).device
                        installed = Installed(device, IFB.format(device.removeprefix("eth")))
                        if tasks.has_link(pid, installed.ifb):  # an earlier run of the agent shaped it
                            self._unshape(pid, installed)
                    up, down = interface.uplink, interface.downlink
                    if interface.network_id and installed.port is None and any(
                            q.needs_delay for q in up.all() + down.all()):
                        installed.network_id = interface.network_id
                        installed.port = self._delay(installed.network_id).port_of(
                            tasks.attachment(pid, interface.subnet).peer_ifindex)
                    if installed.port is not None:
                        self.delays[installed.network_id].set(installed.port, InterfaceShaping(
                            task.instance, interface.network, installed.device, installed.port, up, down))
                        delayed.add(installed.network_id)
                    lines = shaping_commands(installed, interface.subnet, up, down)
                    ip_lines += lines[0]
                    tc_lines += lines[1]
                    installed.uplink, installed.downlink = up, down
                    downlinks[installed.device] = down
                    senders[installed.device] = list(interface.senders_loss)
                    self.installed[key] = installed
                    applied.setdefault(task.instance, {})[interface.network] = installed.device
                if ip_lines:
                    run(in_netns(pid, ["ip", "-batch", "-"]), "\n".join(ip_lines) + "\n")
                if tc_lines:
                    run(in_netns(pid, ["tc", "-batch", "-"]), "\n".join(tc_lines) + "\n")
                ruleset = loss_ruleset(downlinks, rules, senders)
                if self.rulesets.get(task.container) != ruleset:
                    run(in_netns(pid, ["nft", "-f", "-"]), ruleset)
                    self.rulesets[task.container] = ruleset
            for network_id in delayed:
                self.delays[network_id].apply(self.distributions)
        return applied

    @staticmethod
    def _unshape(pid: int, installed: Installed) -> None:
        """Remove what an earlier run of the agent installed on one attachment (this run cannot tell
        what it was; a qdisc that is not there is no error), so that it is shaped as new."""
        for argv in (["tc", "qdisc", "del", "dev", installed.device, "root"],
                     ["tc", "qdisc", "del", "dev", installed.device, "ingress"],
                     ["ip", "link", "del", installed.ifb]):
            run(in_netns(pid, argv), check=False)

    def flows(self, request: FlowsRequest) -> dict[Flow, tuple[int, int]]:
        """Counters of the flows this node's tasks send on these overlay networks.

        The table goes on each network's bridge in its namespace the first time
        (and again if Docker made the namespace anew); a network without a task
        here has no namespace and nothing to count.
        """
        ruleset = flow_ruleset_for(list(request.subnets), SWARM_PORTS)
        parts = []
        for network_id in request.networks:
            try:
                netns = network_namespace(network_id, self.exec_root)
            except LookupError:
                continue
            listing = in_namespace(netns, ["nft", "-j", "list", "set", "bridge", FLOW_TABLE, FLOW_SET])
            try:
                text = run(listing)
            except KernelError:  # not installed yet
                with self.lock:
                    run(in_namespace(netns, ["nft", "-f", "-"]), ruleset)
                    self.counting.add(netns)
                text = run(listing)
            parts.append(parse_flow_set(text))
        return sum_counters(parts)

    def _delay(self, network_id: str) -> NetworkDelay:
        if network_id not in self.delays:
            self.delays[network_id] = NetworkDelay(network_id, self.run_dir, self.exec_root)
        return self.delays[network_id]

    def stop(self) -> None:
        """The agent ends: every delay helper releases what it holds, every stress ends."""
        self.events.stop()
        with self.lock:
            for delay in self.delays.values():
                delay.stop()
            self.delays.clear()
            for netns in self.counting:
                if Path(netns).exists():
                    run(in_namespace(netns, ["nft", "-f", "-"]), flow_teardown(), check=False)
            self.counting.clear()
        self.stress.stop_all()
        for reader in (self._host_cpu, self._instance_cpu, self._classes):
            if reader is not None:
                reader.close()

    def forget(self, containers: list[str]) -> None:
        """These tasks are gone (scale-in, undeploy): drop what we knew of them."""
        known = [self.counters.target(container) for container in containers]
        self._classes.forget({target.pid for target in known if target is not None})  # frees their namespaces
        with self.lock:
            touched = set()
            for container in containers:
                self.rulesets.pop(container, None)
            for key in [k for k in self.installed if k[0] in containers]:
                installed = self.installed.pop(key)
                if installed.port is not None and installed.network_id in self.delays:
                    self.delays[installed.network_id].drop(installed.port)
                    touched.add(installed.network_id)
            for network_id in touched:
                delay = self.delays[network_id]
                if not delay.ports:  # the node's last task on it: Docker removes the namespace soon
                    delay.stop()
                    del self.delays[network_id]
                    continue
                try:
                    delay.apply(self.distributions)
                except (KernelError, LookupError) as error:
                    log.warning("delay of network %s: %s", network_id[:10], error)
            self.counters.forget(containers)
        self.events.nudge()  # a controller's poll returns now (its undeploy waits for it)

    def samples(self, wanted: dict[str, SampleRequest]) -> dict[str, dict[str, float]]:
        """This round's metrics of the given tasks (container id -> request), by instance: cgroup
        counters and app metrics as the local backend reads them, the task's interfaces from its own
        /proc/<pid>/net/dev. A task that is gone meanwhile is left out of the round."""
        out: dict[str, dict[str, float]] = {}
        for container, want in wanted.items():
            try:
                target = self.counters.target(container)
                if target is None:
                    attrs = self._container(container).attrs
                    target = SampleTarget(want.instance, container, int(attrs["State"]["Pid"]), want.cpus,
                                          want.memory,
                                          upper_dir=attrs.get("GraphDriver", {}).get("Data", {}).get("UpperDir"))
                metrics = self.counters.read_one(target)
                if metrics is None:
                    continue
                counters = net_dev(target.pid)
                for network in want.networks:
                    installed = self.installed.get((container, network))
                    if installed is not None and installed.device in counters:
                        metrics[f"network_rx_{network}"], metrics[f"network_tx_{network}"] = counters[installed.device]
                out[want.instance] = metrics
            except Exception as error:  # gone, or restarting: not in this round
                log.debug("%s: not sampled: %s", want.instance, error)
                self.counters.forget([container])
        return out

    def fidelity(self, request: FidelityRequest) -> Readings:
        """This node's readings for the fidelity monitor: its CPU, the given tasks' CPU cgroups and HTB
        classes (uplink on the task's interface, downlink on its IFB, both in its namespace) and the
        node's delay lines (their helpers' queues; a helper that should run and does not is reported)."""
        node = request.node
        if self._host_cpu is None or self._host_cpu.node != node:
            self._host_cpu = HostCpuReader(node)
            self._instance_cpu = InstanceCpuReader(node)
        assert self._instance_cpu is not None
        readings = Readings({node: self._host_cpu.read()})
        pids: dict[str, int] = {}
        for container in request.containers:
            target = self.counters.target(container)
            try:
                pids[container] = target.pid if target is not None else self._pid(container)
            except Exception as error:  # gone or restarting: not in this round
                log.debug("%s: no fidelity reading: %s", container[:12], error)
        readings.instances = self._instance_cpu.read({
            cid: (want.instance, pids[cid], want.cpus) for cid, want in request.containers.items() if cid in pids})
        targets = []
        for cid, want in request.containers.items():
            for network, subnet in want.networks.items():
                installed = self.installed.get((cid, network))
                if installed is None or cid not in pids:
                    continue
                for direction, device, shaping in (("uplink", installed.device, installed.uplink),
                                                   ("downlink", installed.ifb, installed.downlink)):
                    if needs_qdisc(shaping, kernel_delay=False):
                        peers = {minor: str(peer or "")
                                 for minor, peer in class_peers(shaping, IPv4Network(subnet)).items()}
                        targets.append(LinkTarget(want.instance, network, direction, pids[cid], device, peers))
        readings.links = read_link_queues(self._classes, targets, node)
        with self.lock:
            delays = list(self.delays.items())
        for network_id, delay in delays:
            if not delay.line.alive():
                if delay.line.queues():
                    readings.delay_lines_down.append(f"network {network_id[:10]} on {node} (its helper is down)")
                continue
            try:
                readings.delays += delay.queues.readings(delay.ports, node)
            except DelayLineError as error:
                readings.delay_lines_down.append(f"network {network_id[:10]} on {node} ({error})")
        return readings

    def link(self, request: LinkRequest) -> None:
        pid = self._pid(request.container)
        device = tasks.attachment(pid, IPv4Network(request.subnet)).device
        run(in_netns(pid, ["ip", "link", "set", device, "up" if request.up else "down"]))

    def exec(self, request: ExecRequest) -> dict:
        return run_command(self._container(request.container), request.command, request.wait, request.timeout)

    def resources(self, request: ResourcesRequest) -> None:
        """The cgroup limits, written directly: Swarm starts tasks with NanoCpus, and Docker refuses
        a CpuQuota update on such a container (Fogify's vertical scaling failed there)."""
        dirs = cgroup_dirs(self._pid(request.container))
        if request.cpu_quota and "cpu" in dirs:
            (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(request.cpu_period or 100000))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(request.cpu_quota))
        memory = request.memory
        if memory and "memory" in dirs:
            current = int((dirs["memory"] / "memory.limit_in_bytes").read_text())
            files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            # memsw must stay >= the memory limit: raise memsw first when growing, last when shrinking
            for name in (reversed(files) if memory > current else files):
                if (dirs["memory"] / name).exists():
                    (dirs["memory"] / name).write_text(str(memory))

    def start_stress(self, request: StressRequest) -> list[str]:
        return self.stress.start(self._pid(request.container), request.cpus, request.stress)
