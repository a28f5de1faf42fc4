"""The model the client holds: the compose file, the builders that extend it, and its upload form.

Nothing here speaks HTTP: the model is plain data until :meth:`deploy` posts
the file :meth:`ModelMixin.upload_file` writes.
"""

from __future__ import annotations

import os
from typing import IO

import yaml

from ._errors import ExceptionFogifySDK

FOGIFY_FILE = "fogified-docker-compose.yaml"


class ModelMixin:
    """Fogify's model calls: parse the compose file, add nodes, networks, links and blueprints."""

    docker_compose: str | None
    docker_swarm_rep: dict | None
    nodes: list
    networks: list
    topology: list
    scenarios: list
    services: list
    fogify_yaml: IO[bytes] | None  # the last upload_file()'s handle
    compose_dir: str | None  # the compose file's folder: relative trace files are read from there

    def check_docker_swarm_existence(self) -> None:
        """Model builders need a compose file to extend."""
        if self.docker_compose is None:
            raise ExceptionFogifySDK("You can not apply this functionality with fogify yaml")

    def parse_docker_swarm(self) -> None:
        """Read the compose text into ``docker_swarm_rep`` and the model lists."""
        self.check_docker_swarm_existence()
        try:
            self.docker_swarm_rep = yaml.safe_load(self.docker_compose) or {}
        except yaml.YAMLError as error:
            raise ExceptionFogifySDK(f"The docker-compose file is not valid YAML: {error}") from None
        if not isinstance(self.docker_swarm_rep, dict) or "services" not in self.docker_swarm_rep:
            raise ExceptionFogifySDK("The docker-compose should have at least services")
        model = self.docker_swarm_rep.get("x-fogify") or {}
        self.networks = list(model.get("networks") or [])
        self.nodes = list(model.get("nodes") or [])
        self.scenarios = list(model.get("scenarios") or [])
        self.topology = list(model.get("topology") or [])
        self.services = list(self.docker_swarm_rep["services"] or [])

    def upload_file(self, remove_file: bool = True):
        """Write the current model to ``fogified-docker-compose.yaml`` and return it opened (binary).

        The file holds the compose services plus ``x-fogify`` with the builders'
        nodes, networks and topology, and the scenarios (fogify-net runs them
        server-side, so unlike Fogify they are uploaded too). Other ``x-fogify``
        keys of the original file are kept. With ``remove_file`` the path is
        deleted at once and only the open handle remains.
        """
        self.check_docker_swarm_existence()
        model = dict(self.docker_swarm_rep.get("x-fogify") or {})
        model.update(networks=self.networks, topology=self.topology, nodes=self.nodes)
        if self.scenarios:
            model["scenarios"] = self.scenarios
        else:
            model.pop("scenarios", None)
        self.docker_swarm_rep["x-fogify"] = model
        with open(FOGIFY_FILE, "w") as handle:
            yaml.safe_dump(self.docker_swarm_rep, handle, sort_keys=False)
        if self.fogify_yaml is not None and not self.fogify_yaml.closed:
            self.fogify_yaml.close()
        self.fogify_yaml = open(FOGIFY_FILE, "rb")  # noqa: SIM115 - returned open, as Fogify did
        if remove_file:
            os.remove(FOGIFY_FILE)
        return self.fogify_yaml

    def trace_files(self) -> dict[str, bytes]:
        """The files the model's traces name (``trace: <file>`` or ``{file: ...}`` on a network, a links
        rule or a blueprint's network entry), read from the compose file's folder, by the name written.

        :meth:`deploy` uploads them with the model, so the API need not see this machine's files.
        """
        names: list[str] = []
        for network in self.networks:
            if isinstance(network, dict):
                names += _trace_names(network.get("trace"))
                for link in network.get("links") or []:
                    if isinstance(link, dict):
                        names += _trace_names(link.get("trace"))
        for blueprint in self.topology:
            for entry in (blueprint.get("networks") or []) if isinstance(blueprint, dict) else []:
                if isinstance(entry, dict):
                    names += _trace_names(entry.get("trace"))
        files = {}
        for name in dict.fromkeys(names):
            path = os.path.join(self.compose_dir or os.getcwd(), os.path.expanduser(name))
            try:
                with open(path, "rb") as handle:
                    files[name] = handle.read()
            except OSError as error:
                raise ExceptionFogifySDK(f"The trace file {name} cannot be read: {error.strerror}") from None
        return files

    def add_node(self, name: str, cpu_cores: int, cpu_freq: int, memory: str, disk: str = "") -> None:
        """Add a node profile (cores, clock speed in MHz, memory like ``"2G"``)."""
        self.check_docker_swarm_existence()
        if any(node.get("name") == name for node in self.nodes):
            raise ExceptionFogifySDK("The device already exists")
        self.nodes.append({
            "name": name,
            "capabilities": {
                "processor": {"cores": int(cpu_cores), "clock_speed": int(cpu_freq)},
                "memory": memory,
                "disk": disk,
            },
        })

    def add_network(self, name: str, uplink: dict, downlink: dict, capacity: int | None = None) -> None:
        """Add a network with different uplink and downlink characteristics."""
        self._check_new_network(name)
        self.networks.append({"name": name, "uplink": uplink, "downlink": downlink, "capacity": capacity})

    def add_bidirectional_network(self, name: str, bidirectional: dict, capacity: int | None = None) -> None:
        """Add a network with the same characteristics both ways."""
        self._check_new_network(name)
        self.networks.append({"name": name, "bidirectional": bidirectional, "capacity": capacity})

    def _check_new_network(self, name: str) -> None:
        self.check_docker_swarm_existence()
        if any(network.get("name") == name for network in self.networks):
            raise ExceptionFogifySDK("The network already exists")

    def add_link(self, network_name: str, from_node: str, to_node: str, parameters: dict,
                 bidirectional: bool = True) -> None:
        """Add a per-peer link to a network: ``parameters`` is ``{properties}`` or ``{uplink, downlink}``."""
        self.check_docker_swarm_existence()
        network = next((n for n in self.networks if n.get("name") == network_name), None)
        if network is None:
            raise ExceptionFogifySDK("The network does not exist")
        link = {"from_node": from_node, "to_node": to_node, "bidirectional": bidirectional}
        if "properties" in parameters:
            link["properties"] = parameters["properties"]
        elif "uplink" in parameters and "downlink" in parameters:
            link.update(uplink=parameters["uplink"], downlink=parameters["downlink"])
        else:
            raise ExceptionFogifySDK(
                "A link should either have 'properties' field or both 'uplink' and 'downlink' fields")
        network.setdefault("links", []).append(link)

    def add_topology_node(self, label: str, service: str, device: str, networks: list | None = None,
                          replicas: int = 1) -> None:
        """Add a blueprint: ``replicas`` instances of ``service`` on node profile ``device``."""
        self.check_docker_swarm_existence()
        networks = list(networks or [])
        if service not in self.services:
            raise ExceptionFogifySDK(f"There is no service with name {service} in swarm file.")
        if label in [blueprint.get("label") for blueprint in self.topology]:
            raise ExceptionFogifySDK(f"There is another topology node with {label} in your model.")
        if device not in [node.get("name") for node in self.nodes]:
            raise ExceptionFogifySDK(f"There is no device with name {device} in your model.")
        known = [network.get("name") for network in self.networks]
        for network in networks:
            name = network.get("name") if isinstance(network, dict) else network
            if name not in known:
                raise ExceptionFogifySDK(f"There is no network with name {name} in your model.")
        self.topology.append({"service": service, "node": device, "networks": networks,
                              "label": label, "replicas": replicas})


def _trace_names(raw) -> list[str]:
    """The file names in a ``trace`` value: a name, ``{file: name}``, or a list of them."""
    items = raw if isinstance(raw, list) else [raw]
    return [item if isinstance(item, str) else item["file"] for item in items
            if isinstance(item, str) or (isinstance(item, dict) and isinstance(item.get("file"), str))]
