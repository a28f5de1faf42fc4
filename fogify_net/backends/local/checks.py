"""What the local backend refuses before it creates anything: missing images, leftovers, oversized networks."""

from __future__ import annotations

from pathlib import Path

import docker

from ...compile.naming import LABEL
from ...compile.plan import Plan
from ...errors import Conflict
from ...host.containers import docker_client
from ...model.errors import ModelError

MAX_BRIDGE_PORTS = 1023  # a Linux bridge refuses the 1,024th port ("Exchange full")


def check_images(plan: Plan) -> None:
    """Every image the plan runs is here (or can be pulled); else a 400-style error naming the service."""
    client = docker_client()
    for name in sorted({i.service.name for i in plan.instances}):
        image = plan.model.services[name].image
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                client.images.pull(image)
            except docker.errors.APIError:
                raise ModelError(
                    f"services.{name}.image",
                    f"image {image!r} is not on this machine and cannot be pulled; build it first",
                ) from None


def check_leftovers(plan: Plan) -> None:
    """Refuse to deploy over the remains of a crashed run: they would clash by name."""
    leftovers = docker_client().containers.list(all=True, filters={"label": f"{LABEL}=1"})
    if leftovers:
        names = ", ".join(sorted(c.name for c in leftovers)[:5])
        raise Conflict(f"containers of an earlier run are still here ({names}); run `fogify-net cleanup`")
    for network in plan.networks.values():
        if Path(f"/sys/class/net/{network.bridge}").exists():
            raise Conflict(f"bridge {network.bridge} exists already; run `fogify-net cleanup`")
        members = len(plan.members(network.name))
        if members > MAX_BRIDGE_PORTS:
            raise ModelError(f"x-fogify.networks.{network.name}",
                             f"{members} instances, but a Linux bridge holds at most {MAX_BRIDGE_PORTS}")
