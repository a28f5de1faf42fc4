"""Containernet's network class on fogify-net: a script's topology becomes a fogify-net deployment.

`Containernet` records what the script adds (addDocker, addHost, addSwitch,
addLink, a Topo), and `start()` turns it into a fogified compose document
(translate.py), deploys that through the same controller the REST API uses
(in this process; the API is served on FOGIFY_URL's port while the script runs,
so the SDK, `fogify-net cli`, actions, scenarios and monitoring see it), and
binds Mininet node objects to the running containers (nodes.py). Mininet's own
methods then work as scripts expect: `net.get`, `ping`, `pingAll`, `iperf`,
`configLinkStatus`, `CLI(net)`, `stop`.

`FogMininet` is what this and the CLI's view of a running deployment share:
ping with Containernet's `manualdestip`, iperf (iperf3 in the hosts' network
namespaces, whatever their images hold) and link up/down through the actions.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import os
import subprocess
import threading
import time
from dataclasses import replace
from typing import Any

import yaml
from mininet.log import error, info, output, warn
from mininet.net import Mininet
from mininet.node import Node
from mininet.util import ipAdd

from ..model import ModelError, parse_model
from .nodes import ContainerNode, ControllerStub, SwitchNode, ViewLink
from .translate import SHELL_LABEL, TC_OPTIONS, LinkSpec, NodeSpec, document, tc_direction

log = logging.getLogger(__name__)

DEPLOY_TIMEOUT = 900.0
UDP_ATTEMPTS = 5  # iperf's UDP tests started again when they did not connect (through a lossy link)


class Docker(ContainerNode):
    """Containernet's Docker host class, for `addHost(name, cls=Docker, dimage=...)` and Topo.addHost."""


class FogMininet(Mininet):
    """Mininet's network API over a fogify-net deployment (see the module docstring)."""

    def __init__(self, **params: Any):
        """Mininet's constructor, without its check for root (a deployment checks when it starts, and
        a topology can be read and compiled by anyone)."""
        was = Mininet.inited
        Mininet.inited = True
        try:
            super().__init__(**params)
        finally:
            Mininet.inited = was

    def _act(self, kind: str, params: dict) -> dict:
        raise NotImplementedError

    def _flush(self) -> None:
        """Bring up what was added after start() and not used yet (before a test that may need it)."""

    def values(self) -> list:
        self._flush()
        return super().values()

    # --- tests Mininet scripts call ---------------------------------------------------------------

    def ping(self, hosts: list | None = None, timeout: Any = None, manualdestip: str | None = None) -> float:
        """Mininet's ping; with Containernet's `manualdestip`, every host pings that address."""
        self._flush()
        if manualdestip is None:
            return super().ping(hosts, timeout)
        sent_all = lost = 0
        for node in hosts or self.hosts:
            output(f"{node.name} -> ")
            wait = f"-W {timeout} " if timeout else ""
            result = node.cmd(f"ping -c1 {wait}{manualdestip}")
            sent, received = self._parsePing(result)
            sent_all, lost = sent_all + sent, lost + sent - received
            output(f"{manualdestip} " if received else "X ")
            output("\n")
        ploss = 100.0 * lost / sent_all if sent_all else 0.0
        output(f"*** Results: {ploss:.0f}% dropped ({sent_all - lost}/{sent_all} received)\n")
        return ploss

    def iperf(self, hosts: list | None = None, l4Type: str = "TCP", udpBw: str = "10M", fmt: str | None = None,  # noqa: N803
              seconds: int = 5, port: int = 5001) -> list[str]:
        """Mininet's iperf, measured with the host's iperf3 in the two hosts' network namespaces.

        Returns [server's received rate, client's sent rate] as Mininet does
        (UDP: [udpBw, server, client]), e.g. '9.56 Mbits/sec'.
        """
        self._flush()
        client, server = hosts or [self.hosts[0], self.hosts[-1]]
        output(f"*** Iperf: testing {l4Type} bandwidth between {client} and {server}\n")
        for node in (client, server):
            if getattr(node, "cpid", None) is None:
                node.ensure_shell()
        argv = ["iperf3", "-c", server.IP(), "-p", str(port), "-t", str(int(seconds)), "-J"]
        if l4Type == "UDP":
            argv += ["-u", "-b", udpBw]
        elif l4Type != "TCP":
            raise ValueError(f"unexpected l4 type: {l4Type}")
        # iperf3 opens a UDP test with one datagram each way, which a lossy link may drop (Mininet's
        # intfoptions.py measures UDP through 50% loss): a test that did not connect is started again
        for attempt in range(1, UDP_ATTEMPTS + 1 if l4Type == "UDP" else 2):
            sent, received = _iperf_once(client, server, argv, port, seconds)
            if attempt == UDP_ATTEMPTS or not _iperf_unconnected(sent):
                break
            output(f"*** Iperf: the UDP test did not connect through the link (attempt {attempt}); again\n")
        result = [_iperf_rate(received, "sum_received", fmt), _iperf_rate(sent, "sum_sent", fmt)]
        if l4Type == "UDP":
            result.insert(0, udpBw)
        output(f"*** Results: {result}\n")
        return result

    def configLinkStatus(self, src: str, dst: str, status: str) -> None:  # noqa: N802
        """Plug the links between two nodes out or in, through the link_down/link_up actions."""
        self._flush()
        if src not in self.nameToNode or dst not in self.nameToNode:
            error(f"{'src' if src not in self.nameToNode else 'dst'} not in network: "
                  f"{src if src not in self.nameToNode else dst}\n")
            return
        if status not in ("up", "down"):
            error(f"unknown link status {status!r} (up or down)\n")
            return
        a, b = self.nameToNode[src], self.nameToNode[dst]
        kind = f"link_{status}"
        if isinstance(a, SwitchNode) and isinstance(b, SwitchNode):
            self._act(kind, {"switches": [src, dst]})
        else:
            host, other = (a, b) if not isinstance(a, SwitchNode) else (b, a)
            shared = [i for i, _peer in host.connectionsTo(other)]
            if not shared:
                error(f"src and dst not connected: {src} {dst}\n")
                return
            for intf in shared:
                self._act(kind, {"instance_type": host.name, "network": intf.network})
        for intf, peer in a.connectionsTo(b):
            intf.up = peer.up = status == "up"


def _iperf_once(client: Any, server: Any, argv: list[str], port: int, seconds: int) -> tuple[str, str]:
    """One iperf3 test from `client` to a one-off server on `server`: the client's and server's JSON reports."""
    serving = subprocess.Popen(_in_netns(server, ["iperf3", "-s", "-1", "-J", "-p", str(port)]),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 5
        while f":{port} " not in subprocess.run(_in_netns(server, ["ss", "-ltn"]), capture_output=True,
                                                 text=True).stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = subprocess.run(_in_netns(client, argv), capture_output=True, text=True, timeout=seconds + 30).stdout
        return sent, serving.communicate(timeout=15)[0]
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()


def _iperf_unconnected(report: str) -> bool:
    """iperf3's report of a test whose stream never connected (no streams in it)."""
    try:
        return not json.loads(report).get("start", {}).get("connected")
    except (ValueError, AttributeError):
        return True


def _in_netns(node: Any, argv: list[str]) -> list[str]:
    if getattr(node, "cpid", None) is None:  # a switch: the host's own namespace
        return argv
    return ["nsenter", f"--net=/proc/{node.cpid}/ns/net", "--", *argv]


def _iperf_rate(report: str, key: str, fmt: str | None) -> str:
    """`key` (sum_received or sum_sent) of iperf3's JSON report, as Mininet prints rates. Older iperf3
    gives UDP's figures under `sum` only; newer ones also fill `sum` with zeros on the UDP server."""
    try:
        end = json.loads(report)["end"]
        bits = (end[key] if key in end else end["sum"])["bits_per_second"]
    except (ValueError, KeyError, TypeError):
        try:
            said = json.loads(report).get("error")
        except (ValueError, AttributeError):
            said = None
        error(f"iperf3 failed: {said}\n" if said else f"could not parse iperf3 output: {report[:300]}\n")
        return ""
    if fmt and fmt.lower() in ("k", "m", "g"):
        scale = {"k": 1e3, "m": 1e6, "g": 1e9}[fmt.lower()]
        return f"{bits / scale:.3g} {fmt.upper()}bits/sec"
    for unit, scale in (("Gbits", 1e9), ("Mbits", 1e6), ("Kbits", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.3g} {unit}/sec"
    return f"{bits:.0f} bits/sec"


def _unwrap(cls: Any) -> tuple[Any, dict, dict]:
    """A class as Mininet scripts give one: the class, the defaults of functools.partial(cls, **defaults)
    (the caller's values win) and the values of mininet.util.custom(cls, **values) (which win over the
    caller's, as custom's constructor updates the caller's keywords with them)."""
    defaults: dict = {}
    forced: dict = {}
    while True:
        if isinstance(cls, functools.partial):
            defaults = {**cls.keywords, **defaults}
            cls = cls.func
        elif callable(cls) and getattr(cls, "__name__", "").startswith("custom(") and cls.__closure__:
            cells = dict(zip(cls.__code__.co_freevars, (cell.cell_contents for cell in cls.__closure__)))
            if "cls" not in cells or not isinstance(cells.get("params"), dict):
                return cls, defaults, forced
            forced = {**cells["params"], **forced}
            cls = cells["cls"]
        else:
            return cls, defaults, forced


def _is_tc_link(cls: Any) -> bool:
    from mininet.link import TCLink

    return isinstance(cls, type) and issubclass(cls, TCLink)


def _is_tc_intf(cls: Any) -> bool:
    from mininet.link import TCIntf

    return isinstance(cls, type) and issubclass(cls, TCIntf)


def _cluster_host(cls: Any) -> bool:
    """Mininet's cluster edition's host classes (RemoteHost): plain hosts here, where every node is local
    (addHost refuses one placed on another server)."""
    from mininet.examples.cluster import RemoteMixin

    return isinstance(cls, type) and issubclass(cls, RemoteMixin)


def _node_class(cls: Any) -> tuple[type, str]:
    """Our node class for the class a script gives, and the kind of host it is (docker or host).

    Containernet's Docker (ours, or any class named Docker) is a Docker host. Mininet's
    plain Host classes are plain hosts. A script's own Node subclass (Mininet's
    LinuxRouter) is mixed into ours, so its config() and terminate() run on the container.
    """
    from mininet.node import Controller, CPULimitedHost, Host
    from mininet.nodelib import NAT

    from .refused import refuse

    if isinstance(cls, type) and issubclass(cls, Controller):
        refuse(f"host class {cls.__name__}", "the host runs an OpenFlow controller (Mininet's `controller`, "
               "ovs-testcontroller), which this machine does not have; fogify-net's switches are Linux bridges "
               "that learn by themselves and need none")
    if isinstance(cls, type) and issubclass(cls, NAT):
        refuse("NAT", "a NAT node (addNAT, mininet.nodelib.NAT) routes the hosts to the outside world; "
               "fogify-net keeps traffic between the hosts it creates (and loopback), so it has no NAT")
    if cls is None or cls in (Host, Node, CPULimitedHost, ContainerNode) or _cluster_host(cls):
        return ContainerNode, "host"
    if isinstance(cls, type) and (issubclass(cls, Docker) or cls.__name__ == "Docker"):
        return Docker, "docker"
    if isinstance(cls, type) and issubclass(cls, Node):
        return type(cls.__name__, (cls, ContainerNode), {"script_class": cls}), "host"
    raise ModelError(f"host class {cls!r}", "expected a Mininet node class")


class ScriptLink:
    """What addLink gives the script, for Mininet's Link it returns (`link = net.addLink(h1, s1, cls=TCLink)`,
    later `link.intf1.config(bw=10)`, as Mininet's intfoptions.py): the running deployment's link once the
    network has started (its intf1, intf2 and the rest of Mininet's Link)."""

    def __init__(self, spec: LinkSpec):
        self.spec = spec
        self.link: ViewLink | None = None

    def __getattr__(self, name: str) -> Any:
        link = self.__dict__.get("link")
        if link is None:
            raise RuntimeError(f"link {self.spec.node1}-{self.spec.node2}: its {name} exists once the network has "
                               "started (fogify-net makes the links at start())")
        return getattr(link, name)

    def __str__(self) -> str:
        return str(self.link) if self.link is not None else f"{self.spec.node1}<->{self.spec.node2}"


class Containernet(FogMininet):
    """Containernet's API; `start()` deploys the topology with fogify-net (see the module docstring).

    Extra keyword arguments: `api` (serve the REST API while running, default
    True), `data_dir` (the metric store's folder). Mininet's switch, host,
    controller and intf classes are accepted and not needed: switches are Linux
    bridges that learn by themselves, hosts are containers.
    """

    def __init__(self, topo: Any = None, link: Any = None, ipBase: str = "10.0.0.0/8", build: bool = True,  # noqa: N803
                 api: bool = True, data_dir: str = "/var/lib/fogify-net/containernet", **params: Any):
        from mininet.link import Link

        self._specs: dict[str, NodeSpec] = {}
        self._links: list[LinkSpec] = []
        self._handles: dict[int, ScriptLink] = {}  # id(spec) -> what addLink returned for it
        self._ports: dict[str, list[int]] = {}
        self._scenarios: list[dict] = []
        self._deployment = None
        self._static_arp = False
        self._pending: set[str] = set()
        self._lock = threading.RLock()
        self.api, self.data_dir = api, data_dir
        known = {key: params[key] for key in ("controller", "switch", "host", "intf", "xterms", "cleanup",
                                              "inNamespace", "autoSetMacs", "autoStaticArp", "autoPinCpus",
                                              "listenPort", "waitConnected") if key in params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TypeError(f"Containernet() got unexpected arguments: {', '.join(unknown)}")
        known.setdefault("controller", None)
        self._inside = True  # build() called by Mininet itself (its constructor, start()), not by the script
        try:
            super().__init__(topo=topo, link=link or Link, ipBase=ipBase, build=build, **known)
        finally:
            self._inside = False

    def build(self) -> None:
        """Mininet's build. A script that calls it itself (Mininet(build=False), then net.build() and
        the switches started one by one, as Mininet's controllers2.py does) has its hosts up and linked
        then, as Mininet's are: the network deploys here."""
        super().build()
        if not self._inside and self._deployment is None:
            self.start()

    # --- building: record what the script adds ------------------------------------------------------

    def addHost(self, name: str, cls: Any = None, **params: Any) -> ContainerNode:  # noqa: N802
        """A host: a container of the base image (cls=Docker or dimage: of that image), named `name`."""
        if cls is None and "dimage" not in params:
            cls = self.host  # Mininet's host= (a class, partial or custom), as Mininet.addHost takes it
        cls, defaults, forced = _unwrap(cls)
        if "dimage" in params and cls is None:
            cls = Docker
        node_class, kind = _node_class(cls)
        given = {**defaults, **params, **forced}
        if given.get("server") not in (None, "", "localhost", "127.0.0.1"):
            from .refused import refuse

            refuse(f"node {name}", f"placed on server {given['server']!r}: Mininet's cluster edition runs nodes on "
                   "other machines over ssh; fogify-net runs a network on this machine only")
        if given.get("inNamespace") is False:
            from .refused import refuse

            refuse(f"node {name}", "inNamespace=False puts the node in this machine's own network namespace; "
                   "fogify-net keeps traffic between the hosts it creates")
        given.setdefault("ip", ipAdd(self.nextIP, ipBaseNum=self.ipBaseNum, prefixLen=self.prefixLen)
                         + f"/{self.prefixLen}")
        self.nextIP += 1
        with self._lock:
            if name in self.nameToNode:
                raise ValueError(f"a node named {name!r} exists already")
            node = node_class(name, **given)
            self.hosts.append(node)
            self.nameToNode[name] = node
            self._specs[name] = NodeSpec(name, kind, given, getattr(cls, "__name__", ""),
                                         getattr(node_class, "script_class", None) is not None)
            if self._deployment is not None:
                self._pending.add(name)
                node._realize = self._realize
        return node

    def addDocker(self, name: str, cls: Any = None, **params: Any) -> ContainerNode:  # noqa: N802
        """Containernet's addDocker: a container of `dimage` (see the README for the images here)."""
        return self.addHost(name, cls=cls or Docker, **params)

    def addSwitch(self, name: str, cls: Any = None, **params: Any) -> SwitchNode:  # noqa: N802
        """A switch: a Linux bridge (any Mininet switch class is accepted and becomes one, but a script's
        own subclass of one, whose methods drive Open vSwitch or OpenFlow themselves, is refused)."""
        if self._deployment is not None:
            raise ModelError(f"switch {name}", "switches cannot be added to a running network")
        from mininet.node import Switch

        switch_class = _unwrap(cls if cls is not None else self.switch)[0]
        if isinstance(switch_class, type) and issubclass(switch_class, Switch) and not (
                switch_class.__module__.startswith(("mininet.", "fogify_net."))):
            from .refused import refuse

            base = next(c.__name__ for c in switch_class.__mro__ if c.__module__.startswith("mininet."))
            refuse(f"switch {name}", f"its class {switch_class.__name__} is the script's own {base} whose methods "
                   "drive Open vSwitch and OpenFlow themselves (ovs-vsctl, controllers, OpenFlow ports); "
                   "fogify-net's switches are Linux bridges that learn by themselves, with no such hooks "
                   "(to move a host between switches at runtime use fogify-net's `move` action)")
        with self._lock:
            switch = SwitchNode(name)
            self.switches.append(switch)
            self.nameToNode[name] = switch
            self._specs[name] = NodeSpec(name, "switch", dict(params), getattr(cls, "__name__", ""))
        return switch

    def addController(self, name: Any = "c0", controller: Any = None, **params: Any) -> ControllerStub:  # noqa: N802
        """Accepted, and not needed: the switches are Linux bridges that learn by themselves."""
        name = getattr(name, "name", name)
        stub = ControllerStub(str(name))
        self.controllers.append(stub)
        self.nameToNode[stub.name] = stub
        return stub

    def addLink(self, node1: Any, node2: Any, port1: int | None = None, port2: int | None = None,  # noqa: N802
                cls: Any = None, **params: Any) -> ScriptLink:
        """A link. With cls=TCLink (or a TCLink default), bw, delay, jitter, loss and max_queue_size
        shape each end's egress, as Mininet's TCLink; params1/params2 hold per-end ip (and TC) values.
        Returns what stands for Mininet's Link: its intf1 and intf2 once the network runs."""
        names = [node if isinstance(node, str) else node.name for node in (node1, node2)]
        for name in names:
            if name not in self._specs:
                raise KeyError(f"no node {name!r} in the network")
        cls, defaults, forced = _unwrap(self.link if cls is None else cls)
        params = {**defaults, **params, **forced}
        # The interfaces' class, as Mininet's Link picks it: cls1/cls2, else TCIntf for a TCLink, else intf=
        # (the link's or the network's). A TCIntf shapes; custom(TCIntf, bw=...)'s values win (Mininet's limit.py)
        per_end = [params.pop(key, None) for key in ("cls1", "cls2")]
        network_wide = params.pop("intf", None) or self.intf
        shaped = _is_tc_link(cls)
        if any(per_end) or not shaped:
            intf_cls, intf_defaults, intf_forced = _unwrap(next((c for c in per_end if c), network_wide))
            params = {**intf_defaults, **params, **intf_forced}
            shaped = _is_tc_intf(intf_cls)
        for key in ("addr1", "addr2", "fast", "key"):
            params.pop(key, None)
        ends = []
        for index, (name, port) in enumerate(zip(names, (port1, port2)), 1):
            taken = self._ports.setdefault(name, [])
            base = 1 if self._specs[name].kind == "switch" else 0
            port = port if port is not None else max(taken, default=base - 1) + 1
            taken.append(port)
            own = dict(params.pop(f"params{index}", None) or {})
            ends.append((port, own, params.pop(f"intfName{index}", None)))
        spec = LinkSpec(names[0], names[1], ends[0][0], ends[1][0], {**ends[0][1], **params},
                        {**ends[1][1], **params}, shaped, ends[0][2], ends[1][2])
        with self._lock:
            if self._deployment is not None:
                running = [n for n in names if self._specs[n].kind != "switch" and n not in self._pending]
                if running or not any(n in self._pending for n in names):
                    raise ModelError(f"link {names[0]}-{names[1]}", "a running host cannot get a new link yet; "
                                     "links after start() may only join a host added after start() to a switch")
            self._links.append(spec)
        handle = ScriptLink(spec)
        self._handles[id(spec)] = handle
        return handle

    def scenario(self, name: str, actions: list[dict]) -> None:
        """A fogify-net scenario (timed actions, as in x-fogify.scenarios) for this topology."""
        self._scenarios.append({"name": name, "actions": actions})

    def configHosts(self) -> None:  # noqa: N802
        """Nothing yet: hosts are configured by the deployment, and a host class's own config runs at start()."""

    # --- the document ---------------------------------------------------------------------------

    def document(self) -> tuple[dict, list[str]]:
        """The fogified compose document of the topology so far, and the warnings about it."""
        topo_scenarios = list(getattr(self.topo, "scenarios", None) or [])
        return document(list(self._specs.values()), self._links, _local_image_exists(),
                        topo_scenarios + self._scenarios, os.cpu_count() or 1)

    def yaml(self) -> str:
        return yaml.safe_dump(self.document()[0], sort_keys=False)

    # --- running ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Deploy the topology, then bind the nodes to their containers and run host classes' config()."""
        if self._deployment is not None:
            return
        from ..model.limits import MAX_INSTANCES

        if len(self.hosts) > MAX_INSTANCES:
            from .refused import refuse

            refuse("network", f"{len(self.hosts)} hosts: fogify-net deploys at most {MAX_INSTANCES} (each host is a "
                   "container; see the README for what a host costs)")
        if os.geteuid() != 0:
            raise PermissionError("fogify-net deploys as root (it creates containers, bridges and rules)")
        if not self.built:  # Mininet(topo, build=False) started without build(), as Mininet.start() allows
            self._inside = True
            try:
                super().build()
            finally:
                self._inside = False
        from .runtime import Deployment

        doc, warnings = self.document()
        for text in warnings:
            warn(f"*** {text}\n")
        hosts = len([s for s in self._specs.values() if s.kind != "switch"])
        info(f"*** Deploying {hosts} hosts and {len(self.switches)} switches with fogify-net\n")
        deployment = Deployment(self.data_dir, self.api)
        deployment.start(yaml.safe_dump(doc, sort_keys=False), DEPLOY_TIMEOUT)
        self._deployment = deployment
        _at_exit(self._stop_at_exit)
        try:
            self._bind()
            self._run_deferred()
            for node in self.hosts:
                if getattr(type(node), "script_class", None) is not None:
                    node.configDefault()  # a script's own host class (Mininet's LinuxRouter): its config() runs now
            if self._static_arp:
                self.staticArp()
        except BaseException:
            self.stop()
            raise
        info(f"*** Running: {deployment.summary()}\n")

    def _run_deferred(self) -> None:
        """Commands the script sent to hosts before start() (a host class configuring itself in its
        constructor), run now that the hosts are up, in the order they were sent."""
        waited = [node for node in self.hosts if getattr(node, "deferred", None)]
        if waited:
            count = sum(len(node.deferred) for node in waited)
            info(f"*** Running {count} commands sent to {len(waited)} hosts before start()\n")
        for node in waited:
            commands, node.deferred = node.deferred, []
            for command, wait in commands:
                if wait:
                    node.cmd(command)
                else:  # sendCmd: sent, not waited for (docker_cpuset.py starts its load so)
                    node.sendCmd(command)

    def runCpuLimitTest(self, cpu: float, duration: int = 5) -> list[float]:  # noqa: N802 - Mininet's name
        """Mininet's CPU limit test: busy loops in each host, the share of the machine's CPU time each
        host's container got per second (Mininet reads cgroup v1 paths named after its hosts; ours are
        the containers' cgroups)."""
        from ..host.cgroups import cpu_usage_ns

        output(f"*** Testing CPU {cpu * 100:.0f}% bandwidth limit\n")
        cores = os.cpu_count() or 1
        loops = max(1, math.ceil(cores * cpu))
        pids: dict[Any, list[str]] = {}
        for host in self.hosts:
            pids[host] = []
            for _ in range(loops):
                host.cmd("while true; do a=1; done &")
                pids[host].append(host.cmd("echo $!").strip())
        shares: list[float] = []
        try:
            last = {host: cpu_usage_ns(host.cpid) for host in self.hosts}
            for _ in range(duration):
                time.sleep(1)
                for host in self.hosts:
                    now = cpu_usage_ns(host.cpid)
                    shares.append((now - last[host]) / 1e9 / cores * 100)
                    last[host] = now
        finally:
            for host, started in pids.items():
                for pid in started:
                    host.cmd(f"kill -9 {pid}")
        output(f"*** Results: {shares}\n")
        return shares

    def staticArp(self) -> None:  # noqa: N802 - Mininet's name
        """Mininet's autoStaticArp fills every host's ARP cache while it builds, when ours have no
        interfaces yet: remembered then, and done once start() has bound them."""
        if self._deployment is None:
            self._static_arp = True
            return
        super().staticArp()

    def _bind(self, only: set[str] | None = None) -> None:
        """Bind nodes to containers and record the links as Mininet links, from the running plan."""
        emulation = self._deployment.emulation
        plan = emulation.plan
        for switch in self.switches:
            network = plan.switch_network(switch.name)
            if network is not None:
                switch.bind(plan.networks[network].switches[switch.name])
        for instance in plan.instances:
            if instance.name not in self._specs or (only is not None and instance.name not in only):
                continue
            node = self.nameToNode[instance.name]
            labels = dict(instance.service.labels)
            node.bind(instance.container, emulation.instance_pid(instance.name), labels.get(SHELL_LABEL, "exec"))
        ports = {(i.name, x.name): x for i in plan.instances for x in i.interfaces}
        for spec in self._links:
            if only is not None and not {spec.node1, spec.node2} & only:
                continue
            a, b = self.nameToNode[spec.node1], self.nameToNode[spec.node2]
            if isinstance(a, SwitchNode) and isinstance(b, SwitchNode):
                cable = plan.switch_link(a.name, b.name)
                first, second = (cable.source_port, cable.target_port) if cable.source == a.name else (
                    cable.target_port, cable.source_port)
                link = ViewLink(a, b, port1=spec.port1, port2=spec.port2, intfName1=first, intfName2=second,
                                params1={"up": cable.up}, params2={"up": cable.up})
                link.intf1.network = link.intf2.network = cable.network
                self._give_shapers(link, spec.shaped)
                self._note(spec, link)
                continue
            ends = {node.name: ports[(node.name, name or f"{node.name}-eth{port}")]
                    for node, port, name in ((a, spec.port1, spec.intf1), (b, spec.port2, spec.intf2))
                    if not isinstance(node, SwitchNode)}
            names, params = [], []
            for node in (a, b):
                # a switch's end is the host interface's port on its bridge
                interface = ends.get(node.name) or next(iter(ends.values()))
                names.append(interface.port if isinstance(node, SwitchNode) else interface.name)
                params.append(_intf_params(interface, node))
            macs = [None if isinstance(node, SwitchNode) else ends[node.name].mac for node in (a, b)]
            link = ViewLink(a, b, port1=spec.port1, port2=spec.port2, intfName1=names[0], intfName2=names[1],
                            addr1=macs[0], addr2=macs[1], params1=params[0], params2=params[1])
            link.intf1.network = link.intf2.network = next(iter(ends.values())).network
            self._give_shapers(link, spec.shaped)
            self._note(spec, link)

    def _note(self, spec: LinkSpec, link: ViewLink) -> None:
        self.links.append(link)
        if id(spec) in self._handles:
            self._handles[id(spec)].link = link

    def _give_shapers(self, link: ViewLink, shaped: bool) -> None:
        for mine, other in ((link.intf1, link.intf2), (link.intf2, link.intf1)):
            mine.shaper = functools.partial(self._config_intf, mine, other, shaped)

    def _config_intf(self, intf: Any, other: Any, shaped: bool, params: dict) -> None:
        """Mininet's TCIntf.config(bw=..., delay=..., loss=...) on a running network: the interface's egress
        gets exactly these values (Mininet replaces an interface's whole tc setup; what is not given is
        cleared), applied as the network actions apply theirs (the plan, then the backend's reshape)."""
        from ..model.networks import parse_qos_patch
        from ..model.schema import QoS

        tc = {key: params[key] for key in TC_OPTIONS if params.get(key) is not None}
        if not shaped:
            warn(f"*** {intf}: {', '.join(sorted(tc))} ignored, as in Mininet: the link class is not a TCLink\n")
            return
        qos = QoS().patched(parse_qos_patch(tc_direction(tc) or {}, f"{intf}.config"))
        emulation = self._deployment.emulation
        node, peer = intf.node, other.node
        with emulation.lock:
            plan = emulation.plan
            if isinstance(node, SwitchNode) and isinstance(peer, SwitchNode):  # a cable: one of its directions
                target = plan.switch_link(node.name, peer.name)
                field, changed, instance = ("forward" if target.source == node.name else "backward"), None, node.name
            else:  # a host's egress is its uplink; a switch port's egress the downlink of the host behind it
                instance, field = (peer.name, "downlink") if isinstance(node, SwitchNode) else (node.name, "uplink")
                target = plan.instance(instance).interface(intf.network)
                changed = [(instance, intf.network)]
            saved = getattr(target, field)
            setattr(target, field, qos)
            try:
                emulation.reshape(changed)
            except BaseException:
                setattr(target, field, saved)
                emulation.reshape(changed)
                raise
        self._deployment.controller.store.annotate("NETWORK", instance,
                                                   f"Parameters: {intf.name}.config => {qos.describe()}")
        info(f"({qos.describe()}) ")

    def _flush(self) -> None:
        for name in sorted(self._pending):
            self._realize(self.nameToNode[name])

    def pingFull(self, hosts: list | None = None, timeout: Any = None) -> list:  # noqa: N802
        self._flush()
        return super().pingFull(hosts, timeout)

    def _realize(self, node: ContainerNode) -> None:
        """A host added after start(): deploy it now, with the links added to it since."""
        with self._lock:
            if node.name not in self._pending:
                return
            doc, _ = self.document()
            model = parse_model(doc)
            emulation = self._deployment.emulation
            plan = emulation.plan
            blueprint = model.blueprint(node.name)
            for attachment in blueprint.networks:
                if attachment.network not in plan.networks:
                    raise ModelError(f"node {node.name}", f"its link leads into {attachment.network}, which is not "
                                     "a network of the running deployment")
                if attachment.ip is not None and attachment.ip not in plan.networks[attachment.network].subnet:
                    raise ModelError(f"node {node.name}", f"{attachment.ip} is outside network "
                                     f"{attachment.network}'s subnet {plan.networks[attachment.network].subnet}")
            plan.model = replace(plan.model, services={**plan.model.services,
                                                       node.name: model.services[blueprint.service]},
                                 nodes={**plan.model.nodes, blueprint.node: model.nodes[blueprint.node]},
                                 blueprints=(*plan.model.blueprints, blueprint))
            emulation.scale_out(node.name, 1)
            self._pending.discard(node.name)
            self._bind(only={node.name})
            info(f"*** {node.name} is up\n")

    def removeDocker(self, name: Any, **_params: Any) -> bool:  # noqa: N802
        """Containernet's removeDocker: remove a host (and its links) at runtime."""
        return self.removeHost(name)

    def removeHost(self, name: Any, **_params: Any) -> bool:  # noqa: N802
        name = getattr(name, "name", name)
        node = self.nameToNode.get(name)
        if node is None or node not in self.hosts:
            error(f"Host: {name} not found. Cannot remove it.\n")
            return False
        with self._lock:
            node.terminate()
            if self._deployment is not None and name not in self._pending:
                emulation = self._deployment.emulation
                emulation.scale_in(name, 1)
                plan = emulation.plan
                plan.model = replace(plan.model, blueprints=tuple(b for b in plan.model.blueprints
                                                                  if b.label != name))
            self._pending.discard(name)
            self.hosts.remove(node)
            del self.nameToNode[name]
            del self._specs[name]
            self._links = [s for s in self._links if name not in (s.node1, s.node2)]
            self.links = [link for link in self.links if node not in (link.intf1.node, link.intf2.node)]
        return True

    def _act(self, kind: str, params: dict) -> dict:
        if self._deployment is None:
            raise RuntimeError("the network is not started")
        return self._deployment.act(kind, params)

    def stop(self) -> None:
        """Stop the shells and undeploy: no container, link or rule of the network is left."""
        for node in self.hosts + self.switches:
            node.terminate()
        if self._deployment is not None:
            info("*** Undeploying\n")
            deployment, self._deployment = self._deployment, None
            deployment.stop()
        info("*** Done\n")

    def _stop_at_exit(self) -> None:
        if self._deployment is not None:
            self.stop()

    @property
    def deployment(self):
        """The running deployment: its controller (`.controller`) and backend (`.emulation`)."""
        return self._deployment


def _at_exit(callback) -> None:
    """Run `callback` when the script ends without net.stop(), while threads can still be started.

    atexit is too late: by then concurrent.futures refuses new work, and the
    teardown uses a thread pool. threading's own exit hooks run before that one.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(callback)
    else:
        register(callback)


def _intf_params(interface: Any, node: Any) -> dict:
    if isinstance(node, SwitchNode):
        return {"up": interface.up}
    return {"ip": interface.cidr, "up": interface.up}


def _local_image_exists():
    """A check for images on this machine's Docker, or None where Docker does not answer."""
    try:
        from ..host.containers import docker_client

        client = docker_client()
        client.ping()
    except Exception:  # no Docker here: images are checked where the deployment runs
        return None

    def exists(image: str) -> bool:
        try:
            client.images.get(image)
            return True
        except Exception:
            return False

    return exists
