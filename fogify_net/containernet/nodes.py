"""Mininet node, interface and link objects that stand for the parts of a running fogify-net deployment.

They give a Containernet script, Mininet's CLI and Mininet's test helpers
(ping, dumpNodeConnections, ...) what they expect of a node: a name,
interfaces with addresses, links, and a shell that runs commands. The
deployment itself (containers, bridges, veths, shaping) is made by the local
backend from the plan; these objects only look at it, so nothing here creates
or configures a link.

A host's shell starts on first use, as Containernet's does: `docker exec`
into the container, so commands run with the image's own tools and files
(falling back to a host shell in its network namespace when the image has no
bash); a plain Mininet host (addHost) gets a host shell in its network
namespace instead, which is what Mininet gives its hosts. Switches are the
bridges in the host's namespace; their shell is a host shell too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from typing import Any

from mininet.link import Intf, Link
from mininet.node import Host, Switch

from ..host import cgroups

log = logging.getLogger(__name__)

PROMPT = chr(127)
SHELL_MARK = "mininet:fgnv-"  # the shells' $0; `fogify-net cleanup` ends the ones a crashed script left
SHELL_START_TIMEOUT = 15.0
OVS_TOOLS = {"ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovs-dpctl", "dpctl"}
TC_KEYS = {"bw", "delay", "jitter", "loss", "max_queue_size"}  # TCIntf.config's shaping options


def _shell_argv(kind: str, container: str | None, pid: int | None, name: str, private: bool = False) -> list[str]:
    """The shell's command: `docker exec` into the container, or a host bash in its network namespace
    (`private`: in a mount namespace of its own too, for Mininet's privateDirs)."""
    bash = ["bash", "--norc", "--noediting", "-is", f"{SHELL_MARK}{name}"]  # marked for fogify-net cleanup
    if kind == "exec":
        return ["docker", "exec", "-it", "-e", f"PS1={PROMPT}", container, *bash]
    prefix = [] if pid is None else ["nsenter", f"--net=/proc/{pid}/ns/net"]
    if private:
        prefix += ["unshare", "--mount", "--propagation", "private"]
    return [*prefix, "env", f"PS1={PROMPT}", *bash]


class LazyShell:
    """Mininet's shell protocol with a shell started on first use (see the module docstring)."""

    shell_kind = "netns"
    container: str | None = None
    cpid: int | None = None
    _realize: Callable[[Any], None] | None = None  # makes a node added after start() real on first use

    _stdout = _stdin = None

    def startShell(self, mnopts: Any = None) -> None:  # noqa: N802 - Mininet's name
        """Mininet calls this from the constructor; the shell comes when the node is first used."""
        if getattr(self, "_started", False):
            self._open_shell()

    # A script may take a node's shell output to poll it itself (Mininet's multiping.py registers
    # `host.stdout.fileno()` and reads with `monitor()`) before any command: that is a first use too.
    @property
    def stdout(self) -> Any:
        if self._stdout is None and self.shell is None and getattr(self, "_started", False):
            self._open_shell()
        return self._stdout

    @stdout.setter
    def stdout(self, value: Any) -> None:
        self._stdout = value

    @property
    def stdin(self) -> Any:
        if self._stdin is None and self.shell is None and getattr(self, "_started", False):
            self._open_shell()
        return self._stdin

    @stdin.setter
    def stdin(self, value: Any) -> None:
        self._stdin = value

    def _open_shell(self) -> None:
        if self.shell is not None:
            return
        private = bool(getattr(self, "privateDirs", None)) and self.shell_kind == "netns"
        argv = _shell_argv(self.shell_kind, self.container, self.cpid, self.name, private)
        self.master, self.slave = pty.openpty()
        self.shell = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                      start_new_session=True)
        if self.shell_kind == "netns" and self.cpid is not None:  # a host shell: under the container's limits
            cgroups.join(self.shell.pid, self.cpid)
        self._stdin = self._stdout = os.fdopen(self.master, "r")
        self.pollOut = select.poll()
        self.pollOut.register(self._stdout)
        self.outToNode[self._stdout.fileno()] = self
        self.inToNode[self._stdin.fileno()] = self
        self.execed, self.lastCmd, self.lastPid, self.readbuf = False, None, None, ""
        output, deadline = "", time.monotonic() + SHELL_START_TIMEOUT
        while not output.endswith(PROMPT):
            if self.shell.poll() is not None or time.monotonic() > deadline:
                self._close_shell()
                if self.shell_kind == "exec":  # an image without bash: a host shell in its namespace
                    log.warning("%s: no bash in the container (%s); commands run in its network namespace with "
                                "the host's tools", self.name, output.strip()[:120])
                    self.shell_kind = "netns"
                    return self._open_shell()
                raise RuntimeError(f"{self.name}: no shell ({output.strip()[:200]})")
            if self.pollOut.poll(200):
                try:
                    output += self.read(1024)
                except OSError:  # the shell's end of the pty closed
                    continue
        self.waiting = False
        self.cmd("unset HISTFILE; stty -echo; set +m")
        if private:  # Mininet's own mounts, in the shell's mount namespace: nothing of the machine's changes
            Host.mountPrivateDirs(self)
        return None

    def mountPrivateDirs(self) -> None:  # noqa: N802 - Mininet's name
        """Mininet mounts a host's privateDirs from its constructor in the host's mount namespace; here
        a container's own files are private already, and a host shell mounts them in a mount namespace
        of its own when it starts (above)."""

    def unmountPrivateDirs(self) -> None:  # noqa: N802
        """The mounts end with the shell's mount namespace."""

    def _close_shell(self) -> None:
        if self.shell is not None and self.shell.poll() is None:
            os.killpg(self.shell.pid, signal.SIGHUP)
        if self._stdout is not None:
            self.outToNode.pop(self._stdout.fileno(), None)
            self.inToNode.pop(self._stdin.fileno(), None)
            self._stdin.close()
        if self.slave is not None:
            os.close(self.slave)
        if self.shell is not None:
            self.shell.wait()
        self.shell = self._stdin = self._stdout = self.slave = None
        self.waiting = False

    def addIntf(self, intf: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802 - Mininet's name
        """Interfaces are the deployment's; one the script makes itself (a physical interface added to a
        switch, Mininet's hwintf.py) is refused."""
        if not isinstance(intf, ViewIntf):
            from .refused import refuse

            refuse(f"interface {intf}", f"added to {self.name} by the script itself (a physical interface?); "
                   "fogify-net's switches and hosts connect only the hosts it creates, with its own links")
        super().addIntf(intf, *args, **kwargs)

    def ensure_shell(self) -> None:
        """A live shell, started (or restarted after a crash of its container) now."""
        if not getattr(self, "_started", False) and self._realize is not None:
            self._realize(self)
        if not getattr(self, "_started", False):
            raise RuntimeError(f"{self.name} is not running yet: start the network first")
        if self.shell is not None and self.shell.poll() is not None:
            self._close_shell()
        self._open_shell()

    def sendCmd(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802
        self.ensure_shell()
        super().sendCmd(*args, **kwargs)

    def cmd(self, *args: Any, **kwargs: Any) -> str:
        if self.shell is None or self.shell.poll() is not None:
            self.ensure_shell()
        return super().cmd(*args, **kwargs)

    def terminate(self) -> None:
        """Stop the shell only: the deployment removes what it made."""
        self._close_shell()


class ContainerNode(LazyShell, Host):
    """A host of the deployment: its container, its interfaces, a shell inside (see the module docstring)."""

    def __init__(self, name: str, **params: Any):
        self._started = False
        self.deferred: list[tuple[str, bool]] = []
        super().__init__(name, **params)

    def cmd(self, *args: Any, **kwargs: Any) -> str:
        """A command; one sent before the network has started (a host class configuring itself in its
        constructor, as Mininet's treeping64.py does) runs once the host is up, and gives ''."""
        if self._defer(args, wait=True):
            return ""
        return super().cmd(*args, **kwargs)

    def sendCmd(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802 - Mininet's name
        """Mininet's sendCmd; before the network has started, sent once the host is up."""
        if not self._defer(args, wait=False):
            super().sendCmd(*args, **kwargs)

    def _defer(self, args: tuple, wait: bool) -> bool:
        """Keep a command sent before start() (Containernet starts a container at addDocker, fogify-net
        at start): (command, wait for it) in `deferred`; False once the network runs."""
        if self._started or self._realize is not None:
            return False
        words = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        self.deferred.append((" ".join(str(word) for word in words), wait))
        log.debug("%s: %r runs when the network has started", self.name, self.deferred[-1][0])
        return True

    def bind(self, container: str, pid: int, shell_kind: str) -> None:
        """The deployment made this node: its container, init pid and kind of shell."""
        self.container, self.cpid, self.pid, self.shell_kind = container, pid, pid, shell_kind
        self._started = True

    def config(self, **_params: Any) -> dict:
        """Addresses, MACs and routes come from the plan; nothing to configure here."""
        return {}

    def setARP(self, ip: str, mac: str) -> str:  # noqa: N802 - Mininet's name
        """A permanent neighbour entry on the interface whose subnet holds `ip`, made from the host
        (`ip neigh` in the node's namespace), so an image without arp or ip tools gets it too."""
        if not ip or not mac:
            return ""
        device = next((intf.name for intf in self.intfList() if intf.IP() and intf.prefixLen
                       and ip_address(ip) in ip_network(f"{intf.IP()}/{intf.prefixLen}", strict=False)), None)
        if device is None:
            return ""
        result = subprocess.run(["nsenter", f"--net=/proc/{self.cpid}/ns/net", "--", "ip", "neigh", "replace",
                                 ip, "lladdr", mac, "dev", device, "nud", "permanent"],
                                capture_output=True, text=True)
        return result.stderr

    def popen(self, *args: Any, **kwargs: Any):
        """A process in the node: inside the container (exec shells), else in its network namespace."""
        if not self._started:
            self.ensure_shell()
        if self.shell_kind == "exec":
            kwargs.setdefault("mncmd", ["docker", "exec", "-i", self.container])
        else:
            mounts = []
            if self.privateDirs:  # the shell's mount namespace, which holds the private directories
                self.ensure_shell()
                mounts = [f"--mount=/proc/{self.shell.pid}/ns/mnt"]
            kwargs.setdefault("mncmd", ["nsenter", f"--net=/proc/{self.cpid}/ns/net", *mounts, "--"])
            pid = self.cpid
            kwargs.setdefault("preexec_fn", lambda: cgroups.join(os.getpid(), pid))  # under the host's limits
        return super().popen(*args, **kwargs)

    def terminate(self) -> None:
        """Stop the shell and what it left running in the container's cgroups (the container's own
        processes end with it; those of a host shell are outside its pid namespace)."""
        super().terminate()
        if self.cpid is not None:
            for pid in cgroups.joined(self.cpid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start(self) -> None:
        """Containernet's Docker.start(): run the image's ENTRYPOINT and CMD in the background."""
        from ..host.containers import docker_client

        container = docker_client().containers.get(self.container)
        config = container.image.attrs.get("Config", {})
        argv = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
        if not argv or argv == ["/bin/bash"]:
            return
        log.info("%s: running the image's command %s", self.name, " ".join(argv))
        container.exec_run(argv, detach=True)


class SwitchNode(LazyShell, Switch):
    """A switch of the deployment: a Linux bridge in the host's namespace, learning by itself."""

    def __init__(self, name: str, bridge: str | None = None, **params: Any):
        self._started = False
        self.bridge = bridge
        params.setdefault("inNamespace", True)  # no loopback Intf object for it
        super().__init__(name, dpid="1", **params)

    def bind(self, bridge: str) -> None:
        self.bridge, self._started = bridge, True

    def connected(self) -> bool:
        return True

    def cmd(self, *args: Any, **kwargs: Any) -> str:
        """A command in the host's namespace, where the bridge is; Open vSwitch's tools are refused:
        the bridge is not an Open vSwitch (Mininet's numberedports.py reads OpenFlow port numbers)."""
        words = " ".join(str(a) for a in args).split()
        if words and words[0] in OVS_TOOLS:
            from .refused import refuse

            refuse(f"{self.name}: {' '.join(words)[:60]}", f"{words[0]} is Open vSwitch's; {self.name} is a Linux "
                   "bridge (which numbers its ports itself and has no OpenFlow tables)")
        return super().cmd(*args, **kwargs)

    def start(self, _controllers: Any = ()) -> None:
        """The deployment starts the bridge."""

    def stop(self, deleteIntfs: bool = False) -> None:  # noqa: N803 - Mininet's name
        self.terminate()


class ControllerStub:
    """What addController returns: switches are Linux bridges that learn by themselves, no controller runs."""

    waiting = False
    shell = None

    def __init__(self, name: str):
        self.name = name
        self.intfs: dict = {}

    def __repr__(self) -> str:
        return f"<Controller {self.name}: not needed (the switches learn by themselves)>"

    def __str__(self) -> str:
        return self.name

    def intfList(self) -> list:  # noqa: N802
        return []

    def intfNames(self) -> list:  # noqa: N802
        return []

    def connectionsTo(self, _node: Any) -> list:  # noqa: N802
        return []

    def start(self) -> None:
        pass

    def stop(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def terminate(self) -> None:
        pass


class ViewIntf(Intf):
    """An interface the deployment made; its address and MAC are known, so no command asks for them."""

    shaper: Callable[[dict], None] | None = None  # set once the deployment runs: reshapes this interface

    def config(self, ip: str | None = None, mac: str | None = None, up: bool = True, **params: Any) -> dict:
        """Mininet's Intf/TCIntf config. Once the network runs, TCIntf's options (bw, delay, jitter, loss,
        max_queue_size) reshape this interface's egress as the network actions do, replacing what it had."""
        if self.shaper is not None and TC_KEYS & set(params):
            self.shaper(params)
            return {}
        if ip:
            self.ip, self.prefixLen = ip.split("/") if "/" in ip else (ip, None)
        if mac:  # else the one given to the constructor (the plan's) stays
            self.mac = mac
        self.up = up
        return {}

    def updateIP(self) -> str | None:  # noqa: N802
        return self.ip

    def updateMAC(self) -> str | None:  # noqa: N802
        return self.mac

    def updateAddr(self) -> tuple[str | None, str | None]:  # noqa: N802
        return self.ip, self.mac

    def isUp(self, setUp: bool = False) -> bool:  # noqa: N802, N803
        return self.up

    def delete(self) -> None:
        """The deployment removes it."""


class ViewLink(Link):
    """A link of the deployment as Mininet records one (no veth is made here)."""

    def __init__(self, node1: Any, node2: Any, **params: Any):
        params.update(fast=True, intf=ViewIntf)
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, *_args: Any, **_kwargs: Any) -> None:  # noqa: N802
        """The veth pair exists already."""

    def delete(self) -> None:
        """The deployment removes it."""
