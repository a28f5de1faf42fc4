"""Fogify's answer shapes: what its SDK and its users' scripts read back (fogify.md §1.6, §2.1)."""

from __future__ import annotations

import hashlib

from fogify_net.backends.base import TaskFacts
from fogify_net.compile.plan import InstancePlan, Plan


def swarm_representation(plan: Plan) -> dict:
    """The `swarm` object of POST /topology/: a compose file per label, with replicas and limits.

    Fogify's SDK sums `services.<label>.deploy.replicas` to size its progress bar.
    """
    services = {}
    for blueprint in plan.model.blueprints:
        instances = plan.instances_of(blueprint.label)
        service = plan.model.services[blueprint.service]
        cpus = instances[0].cpus if instances else 0.0
        memory = instances[0].memory if instances else (plan.model.nodes[blueprint.node].memory or 0)
        services[blueprint.label] = {
            "image": service.image,
            "environment": {**dict(service.environment), "FOGIFY_NAME": blueprint.label,
                            "FOGIFY_SERVICE_NAME": service.name},
            "networks": {a.network: {} for a in blueprint.networks},
            "deploy": {
                "replicas": blueprint.replicas,
                "resources": {"limits": {"cpus": f"{cpus:.2f}", "memory": f"{memory / 2**30:g}G"}},
            },
        }
    return {"version": "3.7", "networks": {name: {"external": True} for name in plan.networks}, "services": services}


def network_rules(plan: Plan) -> dict:
    """The `networks` object: per label and network, the shaping in words and the link rules."""
    rules: dict = {}
    for blueprint in plan.model.blueprints:
        for attachment in blueprint.networks:
            network = plan.model.network_of(blueprint, attachment.network)
            rules.setdefault(blueprint.label, {})[attachment.network] = {
                "uplink": network.uplink.describe(),
                "downlink": network.downlink.describe(),
                "links": [
                    {"from_node": link.source, "to_node": link.target, "bidirectional": link.bidirectional}
                    for link in plan.networks[attachment.network].links
                    if blueprint.label in (link.source, link.target)
                ],
                "capacity": network.capacity,
            }
    return rules


def swarm_tasks(tasks: dict[str, list[tuple[InstancePlan, TaskFacts]]]) -> dict[str, list[dict]]:
    """GET /topology/ as Fogify answers it on Swarm: `fogify_<label>` -> that service's task objects.

    Published Fogify scripts read a replica's container and address from here,
    e.g. `info["fogify_node"][i]["Status"]["ContainerStatus"]["ContainerID"]` (for
    `docker exec`) and `info["fogify_node"][i]["NetworksAttachments"][0]["Addresses"][0]`
    (`"10.0.1.5/24"`); Fogify's SDK sums the lengths of the lists. Attachments
    follow the order of the blueprint's networks; a crashed instance is a failed task.
    """
    return {f"fogify_{label}": [_task(instance, facts) for instance, facts in entries]
            for label, entries in tasks.items()}


def _task(instance: InstancePlan, facts: TaskFacts) -> dict:
    desired = "running" if facts.state == "running" else "shutdown"
    return {
        "ID": facts.id,
        "Version": {"Index": 1},
        "CreatedAt": facts.created,
        "UpdatedAt": facts.created,
        "Labels": {},
        "Spec": {
            "ContainerSpec": {"Image": instance.service.image,
                              "Env": [f"{k}={v}" for k, v in instance.environment().items()]},
            "Resources": {"Limits": {"NanoCPUs": int(instance.cpus * 1e9), "MemoryBytes": int(instance.memory)}},
        },
        "ServiceID": _stable_id(f"service:{instance.label}"),
        "Slot": instance.slot,
        "NodeID": facts.node_id,
        "Status": {
            "Timestamp": facts.created,
            "State": facts.state,
            "Message": "started" if facts.state == "running" else facts.state,
            "ContainerStatus": {"ContainerID": facts.container_id, "PID": facts.pid, "ExitCode": 0},
            "PortStatus": {},
        },
        "DesiredState": desired,
        "NetworksAttachments": [
            {"Network": {"ID": _stable_id(f"network:{i.network}"), "Spec": {"Name": i.network}},
             "Addresses": [i.cidr]}
            for i in instance.interfaces
        ],
    }


def _stable_id(text: str) -> str:
    """A Swarm-looking 25-character id that stays the same for the same name."""
    return hashlib.sha1(text.encode()).hexdigest()[:25]
