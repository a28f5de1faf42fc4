"""`fogify-net agent`: the per-node worker of the Swarm backend.

One agent runs on every Swarm node, beside that node's dockerd, and does what
must happen on the node itself: shaping inside each local task's network
namespace, commands and stress in its containers, resource changes in its
cgroups, link state. The controller reaches it over the management network
only (never over the emulated overlays), with the same bearer token scheme
as the API; it listens on 127.0.0.1 unless told otherwise.

The agent keeps what it installed per task and network, so a change is a
difference (`tc class replace` of the live class, no burst of unshaped
traffic), and a task it has never seen (new, or restarted by Swarm) gets the
whole shaping. It also samples its tasks' counters for the controller's
metric store (`/samples/`), so metrics come from every node. Requests name containers by their full Docker id; the agent
finds their init pid (hence namespace and cgroups) from its own daemon.
"""

from __future__ import annotations

import hmac
import logging
import threading
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from ..actions.command import run_command
from ..actions.stress import StressRunner
from ..compile.flows import FLOW_SET, FLOW_TABLE, Flow, flow_teardown, flows_to_json, parse_flow_set, sum_counters
from ..compile.netfilter import has_loss, loss_chain, loss_rule
from ..compile.shaping import DirectionShaping, InterfaceShaping, PeerShaping
from ..compile.tc import direction_commands
from ..emulation.cgroups import cgroup_dirs
from ..emulation.kernel import KernelError, in_netns, run
from ..model.schema import QoS
from ..monitoring.appmetrics import read_app_metrics
from ..monitoring.probe import ContainerProbe
from ..monitoring.sampler import SampleTarget
from . import tasks
from .delay import NetworkDelay, in_namespace, network_namespace

log = logging.getLogger(__name__)

IFB = "fgnifb{}"  # the IFB of a task's interface ethN is fgnifbN, inside the task's namespace


# --- wire format of shaping (controller <-> agent) ------------------------------------------


def qos_to_json(qos: QoS) -> dict:
    return asdict(qos)


def direction_to_json(direction: DirectionShaping) -> dict:
    return {"default": qos_to_json(direction.default),
            "peers": [[str(p.peer), qos_to_json(p.qos)] for p in direction.peers]}


def direction_from_json(raw: dict) -> DirectionShaping:
    return DirectionShaping(QoS(**raw["default"]),
                            tuple(PeerShaping(IPv4Address(ip), QoS(**qos)) for ip, qos in raw.get("peers", [])))


# --- what is installed in one task's namespace ----------------------------------------------


def net_dev(pid: int) -> dict[str, tuple[float, float]]:
    """{device: (rx bytes, tx bytes)} in the network namespace of `pid` (/proc/<pid>/net/dev is per netns)."""
    counters = {}
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f.readlines()[2:]:
            name, _, values = line.partition(":")
            fields = values.split()
            counters[name.strip()] = (float(fields[0]), float(fields[8]))
    return counters


@dataclass
class Installed:
    device: str
    ifb: str
    uplink: DirectionShaping | None = None
    downlink: DirectionShaping | None = None
    network_id: str | None = None  # the overlay network, and the task's port on its bridge (for delay)
    port: str | None = None


def loss_ruleset(downlinks: dict[str, DirectionShaping], filters: list[str] | tuple[str, ...] = (),
                 senders: dict[str, list[tuple[str, float]]] | None = None) -> str:
    """nft text for a task's namespace: on each device's receive path, the senders' uplink loss
    ({device: [(sender address, %)]}, each sender's toward this task), drawn apart from the
    device's downlink loss ({device: its downlink}, per peer as the local backend draws it);
    then the plan's partitions and firewall rules (`ip saddr {..} ip daddr {..} drop`, as on the
    local backend's bridges: every packet to a task passes its receive path, so there they hold).

    IP prerouting, not a netdev ingress hook: with the IFB redirect the ingress
    hook never sees the packets. Prerouting is still the receive path, so the
    sender is not told (a drop on its own output would return EPERM to it).
    """
    chains, rules = "", ""
    for device, pairs in sorted((senders or {}).items()):
        by_loss: dict[float, list[str]] = {}
        for address, loss in pairs:
            by_loss.setdefault(loss, []).append(address)
        for loss, addresses in sorted(by_loss.items()):
            if rule := loss_rule(QoS(loss=loss), f'iifname "{device}" ip saddr {{ {", ".join(sorted(addresses))} }} '):
                rules += f"    {rule}\n"
    for device, downlink in sorted(downlinks.items()):
        if has_loss(downlink):
            chains += f"  chain down_{device} {{\n" + "".join(f"    {r}\n" for r in loss_chain(downlink, "saddr"))
            chains += "  }\n"
            rules += f'    iifname "{device}" jump down_{device}\n'
    rules += "".join(f"    {rule}\n" for rule in filters)
    return ("table inet fogify_net\ndelete table inet fogify_net\n"
            f"table inet fogify_net {{\n{chains}  chain rx {{\n    type filter hook prerouting priority -300;\n"
            f"{rules}  }}\n}}\n")


def shaping_commands(installed: Installed, subnet: IPv4Network, uplink: DirectionShaping,
                     downlink: DirectionShaping) -> tuple[list[str], list[str]]:
    """(ip lines, tc lines) taking one attachment from what is installed to the wanted shaping.

    Uplink: HTB on the task's own interface (its egress). Downlink: HTB on an
    IFB that the interface's ingress is redirected to (u32 `match u32 0 0`:
    this kernel has no matchall). Delay goes on the network's bridge (delay.py).
    """
    ip_lines: list[str] = []
    tc_lines = direction_commands(installed.device, installed.uplink, uplink, subnet, "dst", kernel_delay=False)
    if installed.downlink is None:
        ip_lines = [f"link add {installed.ifb} type ifb", f"link set {installed.ifb} up"]
        tc_lines += [
            f"qdisc replace dev {installed.device} handle ffff: ingress",
            f"filter replace dev {installed.device} parent ffff: protocol all prio 1 handle 800::800 "
            f"u32 match u32 0 0 action mirred egress redirect dev {installed.ifb}",
        ]
    tc_lines += direction_commands(installed.ifb, installed.downlink, downlink, subnet, "src", kernel_delay=False)
    return ip_lines, tc_lines


class Agent:
    """The node's tasks and what is installed in them; every method is one HTTP request."""

    def __init__(self, docker_url: str | None = None, run_dir: str | Path = "/run/fogify-net",
                 exec_root: str | Path = "/var/run/docker"):
        import docker

        self.client = docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
        self.installed: dict[tuple[str, str], Installed] = {}  # (container id, network) -> state
        self.stress = StressRunner()
        self.lock = threading.Lock()
        self.probes: dict[str, ContainerProbe] = {}  # container id -> its open counters
        self.run_dir = Path(run_dir)
        self.exec_root = exec_root  # the daemon's --exec-root: where its network namespaces are
        self.delays: dict[str, NetworkDelay] = {}  # overlay network id -> its delay line on this node
        self.rulesets: dict[str, str] = {}  # container id -> the nft ruleset installed in its namespace
        self.counting: set[str] = set()  # overlay namespaces where our flow table counts

    def _pid(self, container_id: str) -> int:
        container = self.client.containers.get(container_id)
        pid = int(container.attrs["State"].get("Pid") or 0)
        if not pid:
            raise LookupError(f"container {container_id[:12]} does not run")
        return pid

    def info(self) -> dict:
        swarm = self.client.info().get("Swarm", {})
        return {"node_id": swarm.get("NodeID"), "hostname": self.client.info().get("Name"),
                "tasks": [t.instance for t in tasks.local_tasks(self.client)]}

    def shape(self, tasks_json: list[dict], filters: list[str] | None = None) -> dict:
        """Install the wanted shaping of every given task, and the partition and firewall rules
        `filters` in each; {instance: {network: device}}."""
        filters = tuple(filters or ())
        applied: dict[str, dict[str, str]] = {}
        delayed: set[str] = set()
        with self.lock:
            for task in tasks_json:
                pid = self._pid(task["container"])
                downlinks: dict[str, DirectionShaping] = {}
                senders: dict[str, list[tuple[str, float]]] = {}
                ip_lines: list[str] = []
                tc_lines: list[str] = []
                for interface in task["interfaces"]:
                    key = (task["container"], interface["network"])
                    subnet = IPv4Network(interface["subnet"])
                    installed = self.installed.get(key)
                    if installed is None:
                        device = tasks.attachment(pid, subnet).device
                        installed = Installed(device, IFB.format(device.removeprefix("eth")))
                    up, down = direction_from_json(interface["uplink"]), direction_from_json(interface["downlink"])
                    if interface.get("network_id") and installed.port is None and any(
                            q.needs_delay for q in up.all() + down.all()):
                        installed.network_id = interface["network_id"]
                        installed.port = self._delay(installed.network_id).port_of(
                            tasks.attachment(pid, subnet).peer_ifindex)
                    if installed.port is not None:
                        self.delays[installed.network_id].set(installed.port, InterfaceShaping(
                            task["instance"], interface["network"], installed.device, installed.port, up, down))
                        delayed.add(installed.network_id)
                    lines = shaping_commands(installed, subnet, up, down)
                    ip_lines += lines[0]
                    tc_lines += lines[1]
                    installed.uplink, installed.downlink = up, down
                    downlinks[installed.device] = down
                    senders[installed.device] = [(a, float(p)) for a, p in interface.get("senders_loss", [])]
                    self.installed[key] = installed
                    applied.setdefault(task["instance"], {})[interface["network"]] = installed.device
                if ip_lines:
                    run(in_netns(pid, ["ip", "-batch", "-"]), "\n".join(ip_lines) + "\n")
                if tc_lines:
                    run(in_netns(pid, ["tc", "-batch", "-"]), "\n".join(tc_lines) + "\n")
                ruleset = loss_ruleset(downlinks, filters, senders)
                if self.rulesets.get(task["container"]) != ruleset:
                    run(in_netns(pid, ["nft", "-f", "-"]), ruleset)
                    self.rulesets[task["container"]] = ruleset
            for network_id in delayed:
                self.delays[network_id].apply()
        return applied

    def flows(self, network_ids: list[str], ruleset: str) -> dict[Flow, tuple[int, int]]:
        """Counters of the flows this node's tasks send on these overlay networks.

        The table goes on each network's bridge in its namespace the first time
        (and again if Docker made the namespace anew); a network without a task
        here has no namespace and nothing to count.
        """
        parts = []
        for network_id in network_ids:
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
        with self.lock:
            for delay in self.delays.values():
                delay.stop()
            self.delays.clear()
            for netns in self.counting:
                if Path(netns).exists():
                    run(in_namespace(netns, ["nft", "-f", "-"]), flow_teardown(), check=False)
            self.counting.clear()
        self.stress.stop_all()

    def forget(self, containers: list[str]) -> None:
        """These tasks are gone (scale-in, undeploy): drop what we knew of them."""
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
                    delay.apply()
                except (KernelError, LookupError) as error:
                    log.warning("delay of network %s: %s", network_id[:10], error)
            for container in [c for c in self.probes if c in containers]:
                self.probes.pop(container).close()

    def samples(self, containers: dict[str, dict]) -> dict[str, dict[str, float]]:
        """This round's metrics of the given tasks, by instance: cgroup counters through the same
        probe as the local backend, the task's interfaces from its own /proc/<pid>/net/dev, app metrics.

        `containers`: {container id: {instance, cpus, memory, networks: {network: subnet}}}.
        A task that is gone meanwhile is left out of the round.
        """
        out: dict[str, dict[str, float]] = {}
        for container, want in containers.items():
            try:
                probe = self.probes.get(container)
                if probe is None:
                    attrs = self.client.containers.get(container).attrs
                    target = SampleTarget(want["instance"], container, int(attrs["State"]["Pid"]),
                                          float(want.get("cpus") or 0), int(want.get("memory") or 0),
                                          upper_dir=attrs.get("GraphDriver", {}).get("Data", {}).get("UpperDir"))
                    probe = self.probes[container] = ContainerProbe(target)
                pid = probe.target.pid
                metrics = probe.read()
                counters = net_dev(pid)
                for network in want.get("networks", {}):
                    installed = self.installed.get((container, network))
                    if installed is not None and installed.device in counters:
                        metrics[f"network_rx_{network}"], metrics[f"network_tx_{network}"] = counters[installed.device]
                metrics.update(read_app_metrics(pid))
                out[want["instance"]] = metrics
            except Exception as error:  # gone, or restarting: not in this round
                log.debug("%s: not sampled: %s", want.get("instance"), error)
                stale = self.probes.pop(container, None)
                if stale is not None:
                    stale.close()
        return out

    def link(self, container: str, subnet: str, up: bool) -> None:
        pid = self._pid(container)
        device = tasks.attachment(pid, IPv4Network(subnet)).device
        run(in_netns(pid, ["ip", "link", "set", device, "up" if up else "down"]))

    def exec(self, container: str, command: str | list[str], wait: bool, timeout: float | None) -> dict:
        return run_command(self.client.containers.get(container),
                           command if isinstance(command, str) else tuple(command), wait, timeout)

    def resources(self, container: str, cpu_quota: int | None, cpu_period: int | None, memory: int | None) -> None:
        """The cgroup limits, written directly: Swarm starts tasks with NanoCpus, and Docker refuses
        a CpuQuota update on such a container (Fogify's vertical scaling failed there)."""
        dirs = cgroup_dirs(self._pid(container))
        if cpu_quota and "cpu" in dirs:
            (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(cpu_period or 100000))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(cpu_quota))
        if memory and "memory" in dirs:
            current = int((dirs["memory"] / "memory.limit_in_bytes").read_text())
            files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            # memsw must stay >= the memory limit: raise memsw first when growing, last when shrinking
            for name in (reversed(files) if memory > current else files):
                if (dirs["memory"] / name).exists():
                    (dirs["memory"] / name).write_text(str(memory))

    def start_stress(self, container: str, cpus: float, request: dict) -> list[str]:
        from types import SimpleNamespace

        from ..model.actions import Stress

        stress = Stress(target=None, duration=float(request["duration"]), cpu=request.get("cpu"),
                        io=request.get("io"), vm=request.get("vm"), vm_bytes=request.get("vm_bytes"))
        return self.stress.start(SimpleNamespace(cpus=cpus), self._pid(container), stress)


def create_app(agent: Agent, token: str | None = None):
    """The agent's Flask app: JSON in, JSON out, errors as {"message": ...}."""
    from flask import Flask, jsonify, request

    app = Flask("fogify-net-agent")

    @app.before_request
    def authorise() -> Any:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given, f"Bearer {token}"):
                return jsonify(message="missing or wrong bearer token"), 401
        return None

    @app.errorhandler(Exception)
    def error(exc: Exception) -> Any:
        status = 404 if isinstance(exc, LookupError) else 400 if isinstance(exc, (KeyError, ValueError)) else 500
        if not isinstance(exc, (LookupError, KeyError, ValueError, KernelError)):
            log.exception("agent request failed")
        return jsonify(message=f"{type(exc).__name__}: {exc}"), status

    @app.get("/health/")
    def health() -> Any:
        return jsonify(agent.info())

    @app.post("/shape/")
    def shape() -> Any:
        body = request.get_json()
        return jsonify(applied=agent.shape(body["tasks"], body.get("filters")))

    @app.post("/samples/")
    def samples() -> Any:
        return jsonify(agent.samples(request.get_json()["containers"]))

    @app.post("/flows/")
    def flows() -> Any:
        body = request.get_json()
        return jsonify(flows=flows_to_json(agent.flows(body["networks"], body["ruleset"])))

    @app.post("/forget/")
    def forget() -> Any:
        agent.forget(request.get_json()["containers"])
        return jsonify(message="OK")

    @app.post("/link/")
    def link() -> Any:
        body = request.get_json()
        agent.link(body["container"], body["subnet"], bool(body["up"]))
        return jsonify(message="OK")

    @app.post("/exec/")
    def execute() -> Any:
        body = request.get_json()
        return jsonify(agent.exec(body["container"], body["command"], bool(body.get("wait")), body.get("timeout")))

    @app.post("/resources/")
    def resources() -> Any:
        body = request.get_json()
        agent.resources(body["container"], body.get("cpu_quota"), body.get("cpu_period"), body.get("memory"))
        return jsonify(message="OK")

    @app.post("/stress/")
    def stress() -> Any:
        body = request.get_json()
        return jsonify(commands=agent.start_stress(body["container"], float(body["cpus"]), body))

    @app.delete("/stress/")
    def stop_stress() -> Any:
        agent.stress.stop_all()
        return jsonify(message="OK")

    return app


def serve(docker_url: str | None, host: str, port: int, token: str | None,
          run_dir: str = "/run/fogify-net", exec_root: str = "/var/run/docker") -> None:
    """Run the agent until interrupted (threaded: shaping one task must not block a health check)."""
    from werkzeug.serving import make_server

    agent = Agent(docker_url, run_dir, exec_root)
    server = make_server(host, port, create_app(agent, token), threaded=True)
    log.info("agent for %s listening on %s:%d", docker_url or "the local dockerd", host, port)
    try:
        server.serve_forever()
    finally:
        agent.stop()
