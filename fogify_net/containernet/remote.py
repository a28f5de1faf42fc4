"""A running deployment as a Mininet network, for Mininet's CLI: what `fogify-net cli` opens.

The topology comes from the API's GET /status/ (instances, their interfaces,
switches and switch links); commands run in the containers on this machine
(docker exec, or a host shell in the namespace of an instance deployed as a
plain Mininet host); `link a b down|up` and the other changes go through the
REST actions, so they are annotated as any action is. Whatever deployed it
(a compose file, a topology file, a running Containernet script) looks the same.
"""

from __future__ import annotations

from typing import Any

import requests
from mininet.cli import CLI
from mininet.log import error

from .net import FogMininet
from .nodes import ContainerNode, SwitchNode, ViewLink
from .translate import SHELL_LABEL


class RemoteNet(FogMininet):
    """The deployment the API at `url` runs, as nodes and links (see the module docstring)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 30):
        self.url, self.headers, self.timeout = url.rstrip("/"), dict(headers or {}), timeout
        super().__init__(topo=None, build=False, controller=None)
        report = self._get("/status/")
        if report["status"] not in ("running", "degraded"):
            raise RuntimeError(f"nothing runs to open a CLI on (status: {report['status']})")
        if report.get("shaping", {}).get("backend") == "swarm":
            raise RuntimeError("the CLI opens shells on this machine; the deployment runs on a Swarm")
        self._build(report, _shell_kinds())

    def _get(self, path: str) -> dict:
        response = requests.get(f"{self.url}{path}", headers=self.headers, timeout=self.timeout)
        body = response.json()
        if response.status_code >= 400:
            raise RuntimeError(body.get("message", f"HTTP {response.status_code}"))
        return body

    def _act(self, kind: str, params: dict) -> dict:
        response = requests.post(f"{self.url}/actions/{kind}/", json={"params": params}, headers=self.headers,
                                 timeout=self.timeout)
        body = response.json()
        if response.status_code >= 400:
            error(f"*** {kind}: {body.get('message')}\n")
        return body

    def _build(self, report: dict, kinds: dict[str, str]) -> None:
        switches = {}
        for network in report.get("networks", []):
            for name, bridge in (network.get("switches") or {network["name"]: network["bridge"]}).items():
                switch = SwitchNode(name)
                switch.bind(bridge)
                switches[name] = switch
                self.switches.append(switch)
                self.nameToNode[name] = switch
        for instance in report["instances"]:
            node = ContainerNode(instance["name"])
            self.hosts.append(node)
            self.nameToNode[node.name] = node
            if instance["state"] != "up" or not instance.get("pid"):
                continue
            node.bind(instance["container"], instance["pid"], kinds.get(instance["container"], "exec"))
            for port, (network, attachment) in enumerate(instance["networks"].items()):
                switch = switches[attachment.get("switch") or network]
                ip = attachment.get("ip")
                cidr = f"{ip}/{attachment['prefixlen']}" if ip and attachment.get("prefixlen") else ip
                link = ViewLink(node, switch, port1=port, intfName1=attachment["interface"],
                                intfName2=attachment["port"], params1={"ip": cidr, "up": attachment.get("up", True)},
                                params2={"up": attachment.get("up", True)})
                link.intf1.network = link.intf2.network = network
                self.links.append(link)
        for cable in report.get("switch_links", []):
            link = ViewLink(switches[cable["from"]], switches[cable["to"]], intfName1=cable["ports"][0],
                            intfName2=cable["ports"][1], params1={"up": cable["up"]}, params2={"up": cable["up"]})
            link.intf1.network = link.intf2.network = cable["network"]
            self.links.append(link)

    def stop(self) -> None:
        """Close the shells; the deployment keeps running (`fogify-net undeploy` ends it)."""
        for node in self.hosts + self.switches:
            node.terminate()


class FogCLI(CLI):
    """Mininet's CLI; instance names may hold '-' and '.' (mec-svc-1.1), which Mininet's parser would split."""

    identchars = CLI.identchars + "-."
    prompt = "fogify-net> "


def _shell_kinds() -> dict[str, str]:
    """Container -> how its commands run (the label a Python topology gives plain hosts)."""
    from ..host.containers import docker_client

    kinds = {}
    for container in docker_client().containers.list(filters={"label": "fogify-net=1"}):
        kinds[container.name] = container.labels.get(SHELL_LABEL, "exec")
    return kinds


def open_cli(url: str, headers: dict[str, str] | None = None, script: str | None = None, **kwargs: Any) -> None:
    """Mininet's CLI on the deployment at `url`, interactive (or running the commands in `script`)."""
    net = RemoteNet(url, headers)
    try:
        FogCLI(net, script=script, **kwargs)
    finally:
        net.stop()
