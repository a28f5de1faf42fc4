"""Fogify's answer shapes for a deploy: what its SDK reads back (fogify.md §1.6)."""

from __future__ import annotations

from fogify_net.compile.plan import Plan


def swarm_representation(plan: Plan) -> dict:
    """The `swarm` object of POST /topology/: a compose file per label, with replicas and limits.

    Fogify's SDK sums `services.<label>.deploy.replicas` to size its progress bar.
    """
    services = {}
    for blueprint in plan.model.blueprints:
        instances = plan.instances_of(blueprint.label)
        service = plan.model.services[blueprint.service]
        cpus = instances[0].cpus if instances else 0.0
        memory = plan.model.nodes[blueprint.node].memory
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
