"""Build a model in Python instead of YAML.

The builder only assembles the same dictionaries a compose file holds and
hands them to the one validating parser, so a model built in code is checked
exactly like one read from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .parse import parse_model
from .schema import DelayDistribution, Model


class ModelBuilder:
    """Collect services, nodes, networks and blueprints, then `build()` a validated Model.

    >>> m = ModelBuilder()
    >>> m.service("web", image="fogify-net/base:latest", command=["sleep", "infinity"])
    >>> m.node("small", cores=1, clock_speed=1200, memory="256M")
    >>> m.network("lan", bidirectional={"bandwidth": "10Mbps", "latency": {"delay": "10ms"}})
    >>> m.blueprint("web", node="small", service="web", networks=["lan"], replicas=2)
    >>> model = m.build()
    """

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.nodes: list[dict[str, Any]] = []
        self.networks: list[dict[str, Any]] = []
        self.topology: list[dict[str, Any]] = []
        self.scenarios: list[dict[str, Any]] = []

    def service(self, name: str, image: str, **compose: Any) -> ModelBuilder:
        """A compose service: image plus environment, volumes, command, entrypoint, working_dir, ..."""
        self.services[name] = {"image": image, **compose}
        return self

    def node(self, name: str, cores: int | None = None, clock_speed: float | None = None,
             memory: str | int | None = None, **processor: Any) -> ModelBuilder:
        """A node profile: cores x clock_speed (MHz), or processor keys such as cpus=0.5, shares, cpuset;
        no memory means no memory limit."""
        cpu = {key: value for key, value in (("cores", cores), ("clock_speed", clock_speed)) if value is not None}
        cpu.update(processor)
        capabilities: dict[str, Any] = {"processor": cpu} if cpu else {}
        if memory is not None:
            capabilities["memory"] = memory
        self.nodes.append({"name": name, "capabilities": capabilities})
        return self

    def network(self, name: str, uplink: dict | None = None, downlink: dict | None = None,
                bidirectional: dict | None = None, **extra: Any) -> ModelBuilder:
        """A network; uplink/downlink/bidirectional take Fogify's {bandwidth, latency: {delay, ...}, drop}."""
        entry: dict[str, Any] = {"name": name, **extra}
        for key, value in (("uplink", uplink), ("downlink", downlink), ("bidirectional", bidirectional)):
            if value is not None:
                entry[key] = value
        self.networks.append(entry)
        return self

    def link(self, network: str, from_node: str, to_node: str, bidirectional: bool = True,
             **parameters: Any) -> ModelBuilder:
        """A per-pair override on `network`: properties=... or uplink=... and downlink=..."""
        for entry in self.networks:
            if entry["name"] == network:
                entry.setdefault("links", []).append(
                    {"from_node": from_node, "to_node": to_node, "bidirectional": bidirectional, **parameters}
                )
                return self
        raise KeyError(f"no network {network!r} defined yet")

    def blueprint(self, label: str, node: str, service: str, networks: list, replicas: int = 1,
                  **extra: Any) -> ModelBuilder:
        """A blueprint; extra keys are the blueprint's own (forwarding, routes, single, placement)."""
        self.topology.append(
            {"label": label, "node": node, "service": service, "networks": networks, "replicas": replicas, **extra})
        return self

    def scenario(self, name: str, actions: list[dict[str, Any]],
                 routes: list[dict[str, Any]] | None = None) -> ModelBuilder:
        """Timed actions; `routes` move devices between networks at given times (see model/scenarios.py)."""
        entry: dict[str, Any] = {"name": name, "actions": actions}
        if routes:
            entry["routes"] = routes
        self.scenarios.append(entry)
        return self

    def document(self) -> dict[str, Any]:
        """The compose document this builder describes (what a YAML file would contain)."""
        fog: dict[str, Any] = {"nodes": self.nodes, "networks": self.networks, "topology": self.topology}
        if self.scenarios:
            fog["scenarios"] = self.scenarios
        return {"version": "3.7", "services": self.services, "x-fogify": fog}

    def build(self, base_dir: Path | None = None,
              distributions: Mapping[str, DelayDistribution] | None = None) -> Model:
        """The validated model; `distributions` are the custom delay distributions its latencies may name."""
        return parse_model(self.document(), base_dir=base_dir, distributions=distributions)
