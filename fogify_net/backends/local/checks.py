"""What the local backend checks before it creates anything: images, leftovers (refused or removed), sizes."""

from __future__ import annotations

import logging

import docker

from ...compile.naming import LABEL
from ...compile.plan import Plan
from ...errors import Conflict
from ...host import owner as owner_record
from ...host.cleanup import cleanup, find_leftovers
from ...host.containers import docker_client, name_taken
from ...model.errors import ModelError, shown

log = logging.getLogger(__name__)

MAX_BRIDGE_PORTS = 1023  # a Linux bridge refuses the 1,024th port ("Exchange full")


def check_images(plan: Plan) -> None:
    """Every image the plan runs is on this machine; else a 400 naming the service.

    A missing image is not pulled here: a pull takes minutes (or forever, with no
    registry in reach) and a deploy request holds the controller's lock meanwhile.
    """
    client = docker_client()
    for name in sorted({i.service.name for i in plan.instances}):
        image = plan.model.services[name].image
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ModelError(
                f"services.{name}.image",
                f"image {shown(image)} is not on this machine; build or pull it first (docker pull {shown(image)})",
            ) from None
        except docker.errors.APIError as error:  # Docker's 400: "invalid reference format"
            raise ModelError(f"services.{name}.image",
                             f"{shown(image)} is not an image reference ({error.explanation or error})") from None


def check_names(plan: Plan) -> None:
    """No container of someone else holds a name the plan gives (a Fogify stack's task, a Containernet host).

    Ours by the label are leftovers, removed before deploying; anyone else's is never touched:
    a 409 naming it, before anything is made.
    """
    names = {i.container for i in plan.instances}
    for container in docker_client().containers.list(all=True):
        if container.name in names and container.labels.get(LABEL) != "1":
            raise name_taken(container.name)


def check_leftovers(plan: Plan) -> None:
    """Refuse to deploy over a living emulation (another process's); leftovers of a dead one are removed later.

    Also refuse networks larger than a bridge holds.
    """
    found = find_leftovers()
    owner = owner_record.living()
    if found and owner is not None:
        raise Conflict(f"an emulation runs on this machine: {owner.what} (pid {owner.pid}) holds "
                       f"{', '.join(found[:5])}{' ...' if len(found) > 5 else ''}; undeploy it first "
                       "(or stop that process; then `fogify-net cleanup` removes what is left)")
    for network in plan.networks.values():
        members = len(plan.members(network.name))
        if members > MAX_BRIDGE_PORTS:
            raise ModelError(f"x-fogify.networks.{network.name}",
                             f"{members} instances, but a Linux bridge holds at most {MAX_BRIDGE_PORTS}")


def remove_leftovers(run_dir: str) -> list[str]:
    """Remove what carries our marks but belongs to no living deployment; returns it, one line each.

    A deploy must never fail on the remains of an earlier run (an API killed
    with SIGKILL, a crashed script): their ports and bridges would clash by name.
    """
    if not find_leftovers():
        owner_record.release_dead()
        return []
    dead = owner_record.current()
    removed = cleanup(run_dir, keep_apis=True)
    if dead is not None and dead.run_dir and dead.run_dir != run_dir:
        removed += cleanup(dead.run_dir, keep_apis=True)
    owner_record.release_dead()
    if removed:
        log.warning("removed leftovers of an earlier run before deploying: %s", "; ".join(removed))
    return removed
