"""The local backend: a plan made real as a Mininet network of Docker hosts on this machine.

Bring-up order: bridges, then containers in parallel (Docker is the slow
part), then every veth pair in one root-namespace batch and one batch per
container, then shaping and names. Anything that fails on the way rolls back
all that was made (the Backend's deploy template), so a failed deploy leaves
nothing behind.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import docker
from mininet.net import Mininet

from ...compile.flows import (
    FLOW_SET,
    FLOW_TABLE,
    Flow,
    flow_port_chains,
    flow_port_table,
    flow_ruleset,
    flow_teardown,
    parse_flow_set,
)
from ...compile.hosts import hosts_file
from ...compile.links import container_commands, switch_bridges, switch_link_commands, veth_commands
from ...compile.naming import LABEL, VOLUME_LABEL
from ...compile.netfilter import bridge_rules
from ...compile.plan import InstancePlan, InterfacePlan, Plan, SwitchLinkPlan, add_instances, remove_instances
from ...host import owner as owner_record
from ...host.capabilities import OVS, Capabilities, probe
from ...host.command import run_command
from ...host.containers import docker_client
from ...host.counters import CounterReader, SampleTarget
from ...host.dockerevents import DockerWatcher, stop_reason
from ...host.fidelity import HostCpuReader, InstanceCpuReader, Readings, name_peers, read_link_queues
from ...host.kernel import KernelError, ip_batch, iptables_ensure, iptables_remove, nft_apply, run
from ...host.netns import runs_in
from ...host.ovs import unusable as ovs_unusable
from ...host.publish import Publishers
from ...host.stress import StressRunner
from ...host.tcstats import ClassReader
from ..base import Backend, DeployError, Progress, Samples, StateCallback, TaskFacts
from .bridge import FogBridge, PreparedLink
from .checks import check_images, check_leftovers, check_names, remove_leftovers
from .containers import first_stopped, kill_init, remove_container, start_container
from .dockerhost import DockerHost
from .handover import HandoverMixin
from .ovs import FogOVSSwitch, controller_target
from .shaper import Shaper

if TYPE_CHECKING:
    from ...model.actions import Stress

log = logging.getLogger(__name__)

PARALLEL_STARTS = 6
RUN_DIR = "/run/fogify-net"


class LocalBackend(HandoverMixin, Backend):
    """The plan, its Mininet network and the kernel state of one deployment on this machine."""

    name = "local"

    def __init__(self, plan: Plan, on_state: StateCallback | None = None, capabilities: Capabilities | None = None,
                 shaping: str = "auto", run_dir: str = RUN_DIR, switch: str = "bridge",
                 ovs_controller: str | None = None):
        """`switch`: `bridge` (a Linux bridge per network) or `ovs` (Open vSwitch, standalone, or
        connected to the OpenFlow controller at `ovs_controller`, IP[:PORT]); ValueError when it
        cannot work with this machine's shaping mechanism."""
        super().__init__(plan, on_state)
        self.capabilities = capabilities or probe()
        self.mechanism = self.capabilities.mechanism(shaping)
        self.switch_kind = self.capabilities.switch(switch, self.mechanism)
        if ovs_controller and self.switch_kind != OVS:
            raise ValueError("an OpenFlow controller needs switch 'ovs'")
        self.ovs_controller = controller_target(ovs_controller) if ovs_controller else None
        self.switch_class = FogOVSSwitch if self.switch_kind == OVS else FogBridge
        self.run_dir = run_dir
        self.net = Mininet(topo=None, build=False, controller=None, switch=self.switch_class, host=DockerHost,
                           link=PreparedLink, inNamespace=False, autoSetMacs=False, waitConnected=False)
        self.hosts: dict[str, DockerHost] = {}
        self.switches: dict[str, FogBridge | FogOVSSwitch] = {}  # by switch name
        self._containers: dict[str, object] = {}  # instance name -> container, including ones without a host yet
        self._bridge_rules: list[tuple[str, str, str]] = []
        self._counters = CounterReader()
        self._claimed = False  # this deployment holds the machine's owner record
        self.node = socket.gethostname()  # the one machine: fidelity readings name it
        self._host_cpu: HostCpuReader | None = None  # fidelity readers, opened at the first reading
        self._instance_cpu = InstanceCpuReader(self.node)
        self._classes = ClassReader()
        self._stress = StressRunner()
        self.publishers = Publishers()  # the instances' published ports (host/publish.py)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.shaper = Shaper(self.mechanism, run_dir, on_state=self._delayline_state,
                             port_filters=self.switch_kind == OVS)
        self._watcher: DockerWatcher | None = None
        self._delayline_detail = ""  # why the delay line is not ok, "" when it is

    # --- bring-up and tear-down ----------------------------------------------------------

    def _bring_up(self, progress: Progress) -> None:
        self._preflight()
        self._publish(self.plan.instances)  # first: a host port in use fails the deploy before anything is made
        self._ensure_forwarding()
        self._create_bridges()
        self._create_named_volumes()
        self._start_flow_counting()
        self.shaper.start()
        self._start_instances(self.plan.instances, progress)
        self.shaper.apply(self.plan, self.pids())
        self.write_hosts()

    def _after_bring_up(self) -> None:
        self._watcher = DockerWatcher(docker_client().api, self.reconcile)
        self._watcher.start()

    def teardown(self) -> None:
        """Remove everything this emulation made; safe on a partial deployment and when called twice."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        with self.lock:
            errors = []
            self.publishers.close_all()
            self._stress.stop_all()
            try:
                self.shaper.stop()
            except KernelError as error:
                errors.append(str(error))
            self._remove_instances(list(self._containers))
            ip_batch([f"link del {link.source_port}" for link in self.plan.switch_links()
                      if Path(f"/sys/class/net/{link.source_port}").exists()], force=True)
            if self.switches:
                self.switch_class.batchShutdown(list(self.switches.values()))
                for switch in self.switches.values():
                    switch.terminate()
                self.switches.clear()
            self._await_ports_gone()
            for table, chain, rule in self._bridge_rules:
                iptables_remove(table, chain, rule)
            self._bridge_rules = []
            if self.counts_flows:
                run(["nft", "-f", "-"], flow_teardown(), check=False)
                self.counts_flows = False
            self.net.hosts, self.net.switches, self.net.links, self.net.nameToNode = [], [], [], {}
            self._counters.close()
            if self._claimed:
                owner_record.release()
                self._claimed = False
            self._close_fidelity_readers()
            if self.state != "error":
                self._set_state("stopped")
            if errors:
                raise KernelError("; ".join(errors))

    def _await_ports_gone(self, timeout: float = 10.0) -> None:
        """Return when the switch ports are gone, so that the next deploy can take their names.

        The kernel destroys a port with its container's namespace, but later, in
        a work queue: in a full test run one outlived its container by over 5 s.
        What is still there after `timeout` is deleted here.
        """
        ports = {interface.port for instance in self.plan.instances for interface in instance.interfaces}
        deadline = time.monotonic() + timeout
        while (left := ports & set(os.listdir("/sys/class/net"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            log.warning("deleting %d switch ports the kernel kept after their containers: %s",
                        len(left), ", ".join(sorted(left)[:5]))
            ip_batch([f"link del {port}" for port in sorted(left)], force=True)

    @classmethod
    def remove_remains(cls, run_dir: str = RUN_DIR, **_options) -> list[str]:
        """The leftovers of a dead process's emulation on this machine, unless another process's runs."""
        owner = owner_record.living()
        if owner is not None:
            log.warning("not removing anything: the emulation of %s (pid %d) runs", owner.what, owner.pid)
            return []
        return remove_leftovers(run_dir)

    def check(self) -> None:
        """Refuse at once what cannot deploy here: a missing image, leftovers of a crashed run."""
        check_images(self.plan)
        check_names(self.plan)
        check_leftovers(self.plan)

    def _preflight(self) -> None:
        caps = self.capabilities
        if not caps.root:
            raise DeployError("fogify-net must run as root (it creates namespaces, links and rules)")
        if not caps.docker:
            raise DeployError("no Docker daemon answers (start dockerd, or run scripts/install.sh)")
        if self.switch_kind == OVS:
            why = ovs_unusable(caps.ovs_kernel)
            if why:
                raise DeployError(f"switch 'ovs': {why}")
        check_images(self.plan)
        check_names(self.plan)
        check_leftovers(self.plan)
        removed = remove_leftovers(self.run_dir)
        if removed:
            self.notices.append(f"removed {len(removed)} leftovers of an earlier run: {', '.join(removed[:8])}"
                                f"{' ...' if len(removed) > 8 else ''}")
        owner_record.claim(" ".join(sys.argv)[:200], self.run_dir)
        self._claimed = True

    def _ensure_forwarding(self) -> None:
        """Our bridges forward despite Docker's FORWARD policy, and their traffic is not tracked."""
        for table, chain, rule in bridge_rules():
            if iptables_ensure(table, chain, rule, position=1):
                self._bridge_rules.append((table, chain, rule))

    def _create_named_volumes(self) -> None:
        """Named volumes the services use, made here with our label so `fogify-net cleanup` finds them.

        Docker would make them on first use, unlabelled. Like Compose's, they
        outlive an undeploy (they hold the application's data); a volume that
        existed before is the user's and is left as it is.
        """
        client = docker_client()
        names = {v.source for i in self.plan.instances for v in i.service.volumes if v.source and not v.is_bind}
        for name in sorted(names):
            try:
                client.volumes.get(name)
            except docker.errors.NotFound:
                client.volumes.create(name, labels={LABEL: VOLUME_LABEL})

    def _start_flow_counting(self) -> None:
        """The per-flow counters of packet-level monitoring, when a network asks for them (with Open
        vSwitch the set now, the chains on the ports as they are attached: `_attach_ports`)."""
        ruleset = flow_port_table(self.plan) if self.switch_kind == OVS else flow_ruleset(self.plan)
        if ruleset is not None:
            self.counts_flows = True
            nft_apply(ruleset)

    def flow_counters(self) -> dict[Flow, tuple[int, int]]:
        if not self.counts_flows:
            return {}
        try:
            family = "netdev" if self.switch_kind == OVS else "bridge"
            return parse_flow_set(run(["nft", "-j", "list", "set", family, FLOW_TABLE, FLOW_SET]))
        except KernelError as error:  # torn down meanwhile
            log.debug("no flow counters: %s", error)
            return {}

    def _create_bridges(self) -> None:
        """One bridge per switch, then the cables between the switches of a network."""
        links = self.plan.switch_links()
        options = {"controller": self.ovs_controller} if self.switch_kind == OVS else {}
        for name, network in self.plan.networks.items():
            for switch, bridge in network.switches.items():
                self.switches[switch] = self.net.addSwitch(bridge, cls=self.switch_class, network=name, **options)
        self.switch_class.batchStartup(list(self.switches.values()))
        bridges = switch_bridges(self.plan)
        ovs = self.switch_kind == OVS
        ip_batch([line for link in links for line in switch_link_commands(link, bridges, master=not ovs)])
        if ovs:
            FogOVSSwitch.attach_ports({port: bridges[switch] for link in links
                                       for port, switch in ((link.source_port, link.source),
                                                            (link.target_port, link.target))})
        for link in links:
            self.net.addLink(self.switches[link.source], self.switches[link.target], intfName1=link.source_port,
                             intfName2=link.target_port, addr1=None, addr2=None)

    def _veths(self, instance: InstancePlan, pid: int, bridges: dict[str, str],
               interfaces: list[InterfacePlan] | None = None) -> list[str]:
        return veth_commands(instance, pid, bridges, interfaces, master=self.switch_kind != OVS)

    def _attach_ports(self, interfaces: list[InterfacePlan]) -> None:
        """Open vSwitch takes its ports in its database (Linux bridges got theirs in the veth batch),
        and packet-level monitoring counts on their ingress (a bridge counts on its forward hook)."""
        if self.switch_kind == OVS:
            bridges = switch_bridges(self.plan)
            FogOVSSwitch.attach_ports({i.port: bridges[i.switch] for i in interfaces})
            chains = flow_port_chains(self.plan, interfaces) if self.counts_flows else ""
            if chains:
                nft_apply(chains)

    # --- instances ---------------------------------------------------------------------------

    def _publish(self, instances: list[InstancePlan]) -> None:
        """Listen on the ports these instances publish (Conflict naming a port in use; none left open)."""
        opened = []
        try:
            for instance in instances:
                self.publishers.open(instance, lambda name=instance.name: self._upstream(name))
                opened.append(instance.name)
        except BaseException:
            self.publishers.close(opened)
            raise

    def _upstream(self, name: str) -> tuple[int, list[str]] | None:
        """Where a published port of `name` connects now: its init pid (new after a restart) and its
        loopback, then its own addresses; None while it does not run."""
        host, instance = self.hosts.get(name), self.plan.instance(name)
        if host is None or instance is None or not host.cpid or name in self.crashed or name in self.lost:
            return None
        if not runs_in(host.cpid, host.container.id):  # restarting: the pid we hold is not the container's
            return None
        return host.cpid, ["127.0.0.1", *(str(i.ip) for i in instance.interfaces if i.ip is not None)]

    def _start_instances(self, instances: list[InstancePlan], progress: Progress) -> None:
        """Containers in parallel, each one's shell as soon as it runs, then links; Mininet learns of them.

        Docker is the slow part, so the shells start in this thread while Docker
        starts the next containers (one after another: Mininet's pty handling is
        not made for parallel starts). Doing the links the same way was measured
        too: it cost more forks and gained nothing, since Docker keeps both CPUs busy.
        """
        total = len(instances)
        failure = None
        with ThreadPoolExecutor(max_workers=PARALLEL_STARTS) as pool:
            futures = {pool.submit(self._start_container, instance): instance for instance in instances}
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    future.result()
                    if failure is None:
                        self._start_shell(futures[future])
                except Exception as error:  # keep waiting, so every container that started is known
                    failure = failure or error
                progress(done, total, "containers")
        if failure is not None:
            raise failure
        started = [(instance, self.hosts[instance.name]) for instance in instances]
        bridges = switch_bridges(self.plan)
        try:
            ip_batch([line for instance, host in started for line in self._veths(instance, host.cpid, bridges)])
            self._attach_ports([i for instance, _ in started for i in instance.interfaces])
            self._parallel(lambda pair: ip_batch(container_commands(pair[0]), pair[1].cpid), started)
        except KernelError as error:  # "No such process": a container died, and its namespace with it
            stopped = first_stopped([self._containers[instance.name] for instance in instances])
            if stopped is None:
                raise
            raise RuntimeError(stopped) from error
        for instance, host in started:
            self.net.hosts.append(host)
            self.net.nameToNode[host.name] = host
            for interface in instance.interfaces:
                self.net.addLink(host, self.switches[interface.switch], intfName1=interface.name,
                                 intfName2=interface.port, params1={"ip": interface.cidr}, addr1=None, addr2=None)

    def _start_container(self, instance: InstancePlan) -> None:
        self._containers[instance.name] = start_container(instance)

    def _start_shell(self, instance: InstancePlan) -> DockerHost:
        host = DockerHost(instance.host_node, container=self._containers[instance.name], ip=None, lo=None)
        self.hosts[instance.name] = host
        return host

    def _remove_instances(self, names: list[str]) -> None:
        """Stop shells first (they hold the namespaces), kill the containers, then remove them in parallel.

        Killing a container's init ourselves, all at once, before Docker removes it
        saves Docker a kill and a wait per container: 80 removals took 1.8 s
        instead of 2.2 s on the 2-core test machine.
        """
        gone = [self.hosts.pop(name) for name in names if name in self.hosts]
        self._classes.forget({host.cpid for host in gone if host.cpid})
        for host in gone:
            host.stop_shell()
        if gone:
            nodes = {id(host) for host in gone}
            self.net.hosts = [h for h in self.net.hosts if id(h) not in nodes]
            self.net.links = [link for link in self.net.links
                              if id(link.intf1.node) not in nodes and id(link.intf2.node) not in nodes]
            for host in gone:
                self.net.nameToNode.pop(host.name, None)
        for name in names:
            if name in self._containers and name not in self.crashed:
                kill_init(self._containers[name])
        self.crashed.difference_update(names)

        def remove(name: str) -> None:
            container = self._containers.get(name)
            if container is not None:
                remove_container(container)
                self._containers.pop(name, None)

        self._parallel(remove, [name for name in names if name in self._containers])

    def started(self) -> list[str]:
        """Instances whose container runs (deploy and undeploy progress); crashed and lost ones do not."""
        return [name for name in list(self._containers)  # (a copy: starts add)
                if name not in self.crashed and name not in self.lost]

    def task_facts(self) -> dict[str, TaskFacts]:
        """Each instance's container as a Swarm task would name it; this machine is the only node.

        A stopped container (crashed, or lost: killed, OOM-killed) is a failed task with no
        pid, as Swarm lists a dead task; it reads `running` again once it is rebuilt.
        """
        node = socket.gethostname()
        facts = {}
        for name, container in list(self._containers.items()):
            down = name in self.crashed or name in self.lost  # stopped by the crash action or without us
            host = self.hosts.get(name)
            facts[name] = TaskFacts(
                id=container.id[:25], node_id=node, container_id=container.id,
                pid=0 if down or host is None else host.cpid,
                state="failed" if down else "running", created=container.attrs.get("Created", ""))
        return facts

    def _parallel(self, fn: Callable, items: list) -> None:
        if not items:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_STARTS, len(items))) as pool:
            for future in [pool.submit(fn, item) for item in items]:
                future.result()

    # --- runtime changes ---------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        """Init pids of the instances that run; a crashed instance has no namespace to act in."""
        return {name: host.cpid for name, host in self.hosts.items()
                if name not in self.crashed and name not in self.lost}

    def reshape(self, changed: Collection[tuple[str, str]] | None = None) -> None:
        """Apply the plan's current shaping, partitions and firewall rules (only `changed` attachments' shaping)."""
        with self.lock:
            ports = None
            if changed is not None:
                instances = {instance.name: instance for instance in self.plan.instances}
                ports = {interface.port for name, network in changed
                         if (instance := instances.get(name)) and (interface := instance.interface(network))}
                ports |= {link.source_port for link in self.plan.switch_links() if (link.name, link.network) in changed}
            self.shaper.apply(self.plan, self.pids(), only=ports)

    def scale_out(self, label: str, count: int) -> list[InstancePlan]:
        """New replicas, addressed, shaped and named before this returns."""
        with self.lock:
            added = add_instances(self.plan, label, count)
            try:
                self._publish(added)
                self._start_instances(added, lambda *args: None)
            except BaseException:
                self.publishers.close([i.name for i in added])
                self._remove_instances([i.name for i in added])
                remove_instances(self.plan, label, len(added))
                raise
            self.reshape()
            self.write_hosts()
            return added

    def scale_in(self, label: str, count: int) -> list[InstancePlan]:
        """Remove the highest slots of `label`."""
        with self.lock:
            removed = remove_instances(self.plan, label, count)
            self.publishers.close([i.name for i in removed])
            self._remove_instances([i.name for i in removed])
            # their switch ports go now, not when the kernel gets round to freeing the namespaces: until
            # then a removed instance's stack still answers (seen under load: a ping right after removal)
            ip_batch([f"link del {i.port}" for instance in removed for i in instance.interfaces
                      if Path(f"/sys/class/net/{i.port}").exists()], force=True)
            self.shaper.forget([i.port for instance in removed for i in instance.interfaces])
            self.reshape()
            self.write_hosts()
            return removed

    def set_link_state(self, instances: list[InstancePlan], network: str, up: bool) -> None:
        """Unplug or plug the cable: the switch port goes down, the instance sees no carrier.

        A crashed instance has no port now; the plan keeps the state for its restart.
        """
        with self.lock:
            lines = []
            for instance in instances:
                interface = instance.interface(network)
                interface.up = up
                if instance.name not in self.crashed:
                    lines.append(f"link set {interface.port} {'up' if up else 'down'}")
            ip_batch(lines)

    def set_switch_link_state(self, link: SwitchLinkPlan, up: bool) -> None:
        """Unplug or plug the cable between two switches: both ends go down (or up) together."""
        with self.lock:
            link.up = up
            state = "up" if up else "down"
            ip_batch([f"link set {link.source_port} {state}", f"link set {link.target_port} {state}"])

    def crash(self, instances: list[InstancePlan]) -> None:
        """Kill the containers; their links go with their namespaces (the fidelity reader's sockets in
        them closed first: an open one would keep a namespace, and the instance's address, alive)."""
        with self.lock:
            self._classes.forget({self.hosts[i.name].cpid for i in instances if self.hosts[i.name].cpid})
            self.publishers.drop_connections([i.name for i in instances])
            for instance in instances:
                host = self.hosts[instance.name]
                host.stop_shell()
                host.container.kill()
                self.crashed.add(instance.name)
            self.shaper.forget([i.port for instance in instances for i in instance.interfaces])

    def restart(self, instances: list[InstancePlan]) -> None:
        """Start (or restart) the containers and rebuild their links, shaping and names."""
        self._reattach(instances, restart=True)

    def _reattach(self, instances: list[InstancePlan], restart: bool) -> None:
        """Rebuild the links, shaping and names of these instances' containers, (re)started first
        with `restart`, else running again already (started by someone else after a loss)."""
        with self.lock:
            bridges = switch_bridges(self.plan)
            root = []
            for instance in instances:
                old = self.hosts[instance.name]
                old.stop_shell()
                if restart:
                    if old.cpid:  # its namespace goes with the old process, links and all
                        self._classes.forget({old.cpid})
                    old.container.restart(timeout=2)
                old.container.reload()
                self.crashed.discard(instance.name)
                self.lost.pop(instance.name, None)
                self.net.hosts = [h for h in self.net.hosts if h is not old]
                self.net.links = [link for link in self.net.links if old not in (link.intf1.node, link.intf2.node)]
                host = DockerHost(instance.host_node, container=old.container, ip=None, lo=None)
                self.hosts[instance.name] = host
                self.net.hosts.append(host)
                self.net.nameToNode[host.name] = host
                root += [f"link del {i.port}" for i in instance.interfaces if Path(f"/sys/class/net/{i.port}").exists()]
                root += self._veths(instance, host.cpid, bridges)
            ip_batch(root)
            self._attach_ports([i for instance in instances for i in instance.interfaces])
            for instance in instances:
                host = self.hosts[instance.name]
                ip_batch(container_commands(instance), host.cpid)
                for interface in instance.interfaces:
                    self.net.addLink(host, self.switches[interface.switch], intfName1=interface.name,
                                     intfName2=interface.port, params1={"ip": interface.cidr}, addr1=None, addr2=None)
            self.shaper.forget([i.port for instance in instances for i in instance.interfaces])
            self.reshape()
            self.write_hosts()
            self._refresh_state()

    # --- following Docker ------------------------------------------------------------------------

    def reconcile(self, container_id: str | None = None) -> None:
        """Bring what we know in line with Docker's view of one container (None: all of ours).

        A container of ours that stopped without us (OOM killer, `docker kill`, a dockerd
        restart) makes its instance lost: `down` in /status/, out of sampling, and the
        deployment degraded (annotated). When it runs again (`docker start`, or after
        dockerd), its links, shaping and names are rebuilt as the restart action does.
        """
        with self.lock:
            if self.state not in ("running", "degraded"):
                return
            names = [name for name, c in self._containers.items()
                     if container_id is None or c.id == container_id]
            back = []
            for name in names:
                if name in self.crashed or name not in self.hosts:
                    continue
                container = self._containers[name]
                try:
                    container.reload()
                    state = container.attrs.get("State", {})
                except docker.errors.NotFound:
                    state = {"Running": False, "Error": "the container was removed"}
                running, pid = bool(state.get("Running")), int(state.get("Pid") or 0)
                if not running and name not in self.lost:
                    reason = stop_reason(state)
                    log.warning("%s %s without fogify-net", name, reason)
                    self.lost[name] = reason
                    # our shell holds the namespace: without this a killed router kept forwarding
                    self.hosts[name].stop_shell()
                    self.shaper.forget([i.port for i in self.plan.instance(name).interfaces])
                    if self.hosts[name].cpid:  # our socket there would keep its dead namespace and links
                        self._classes.forget({self.hosts[name].cpid})
                    self.publishers.drop_connections([name])
                elif running and (name in self.lost or pid != self.hosts[name].cpid):
                    back.append(self.plan.instance(name))
            if back:
                log.info("%s running again: rebuilding links and shaping", ", ".join(i.name for i in back))
                self._reattach(back, restart=False)
            self._refresh_state()

    def _degraded_reasons(self) -> list[str]:
        """Lost instances, and the delay line when it is down."""
        return super()._degraded_reasons() + ([self._delayline_detail] if self._delayline_detail else [])

    def update_resources(self, instance: InstancePlan, cpu_quota: int | None = None, memory: int | None = None) -> None:
        with self.lock:
            host = self.hosts[instance.name]
            host.update_resources(cpu_quota=cpu_quota, cpu_period=instance.cpu_period if cpu_quota else None,
                                  mem_limit=memory, memswap_limit=memory)
            if cpu_quota:
                instance.cpu_quota = cpu_quota
            if memory:
                instance.memory = memory

    def write_hosts(self) -> None:
        """Rewrite every container's /etc/hosts in place (the file is bind-mounted, keep its inode).

        A hosts file depends only on the networks its instance is on, so it is
        rendered once per distinct set of networks, not once per instance.
        """
        instances = {instance.name: instance for instance in self.plan.instances}
        rendered: dict[frozenset[str], str] = {}
        for name, host in list(self.hosts.items()):
            instance = instances.get(name)
            path = host.container.attrs.get("HostsPath")
            if instance is None or not path:
                continue
            networks = frozenset(i.network for i in instance.interfaces)
            if networks not in rendered:
                rendered[networks] = hosts_file(self.plan, instance)
            with open(path, "r+") as f:
                f.seek(0)
                f.write(rendered[networks])
                f.truncate()

    # --- inside instances, monitoring and status ---------------------------------------------

    def run_command(self, instance: InstancePlan, command: str | tuple[str, ...], wait: bool,
                    timeout: float | None) -> dict:
        return run_command(self.hosts[instance.name].container, command, wait, timeout)

    def stress(self, instance: InstancePlan, request: Stress) -> list[str]:
        return self._stress.start(self.pids()[instance.name], instance.cpus, request)

    def instance_pid(self, name: str) -> int | None:
        host = self.hosts.get(name)
        return host.cpid if host is not None else None

    def samples(self) -> Samples:
        """Every running instance's counters, read here (cgroups, switch ports, app metrics)."""
        targets = []
        for instance in list(self.plan.instances):
            host = self.hosts.get(instance.name)
            if host is None or instance.name in self.crashed or instance.name in self.lost:
                continue
            targets.append(SampleTarget(
                name=instance.name,
                container_id=host.container.id,
                pid=host.cpid,
                cpus=instance.cpus,
                memory_limit=instance.memory,
                ports={i.network: i.port for i in instance.interfaces},
                upper_dir=host.container.attrs.get("GraphDriver", {}).get("Data", {}).get("UpperDir"),
            ))
        return self._counters.read(targets)

    def fidelity_readings(self) -> Readings:
        """This machine's CPU, the instances' CPU cgroups, the links' HTB classes (in the instances'
        namespaces and on the switch ports) and the delay line's queues."""
        readings = Readings()
        if self._host_cpu is None:
            self._host_cpu = HostCpuReader(self.node)
        readings.hosts[self.node] = self._host_cpu.read()
        pids = self.pids()
        planned = {instance.name: instance for instance in list(self.plan.instances)}
        readings.instances = self._instance_cpu.read({
            host.container.id: (name, host.cpid, planned[name].cpus)
            for name, host in list(self.hosts.items()) if name in pids and name in planned})
        readings.links = read_link_queues(self._classes, self.shaper.link_targets(self.plan, pids), self.node)
        readings.delays, readings.delay_lines_down = self.shaper.delay_readings(self.node)
        name_peers(readings, self._peer_names())
        return readings

    def _close_fidelity_readers(self) -> None:
        if self._host_cpu is not None:
            self._host_cpu.close()
            self._host_cpu = None
        self._instance_cpu.close()
        self._classes.close()

    def shaping_report(self) -> dict:
        report: dict = {"not_applied": self.shaper.unshaped(self.plan)}
        if self.shaper.delayline is not None:
            report["delay_line"] = {"alive": self.shaper.delayline.alive(), "restarts": self.shaper.delayline.restarts}
        return report

    # --- state ---------------------------------------------------------------------------------

    def _delayline_state(self, state: str, detail: str) -> None:
        """The delay-line supervisor reports: a dead helper means traffic is not shaped as declared."""
        self._delayline_detail = "" if state == "ok" else detail
        self._refresh_state()
