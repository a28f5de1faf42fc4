"""The Swarm objects of a deployment: overlay networks, one service per blueprint, their tasks.

Plain functions over a Docker client of the Swarm manager; SwarmBackend
(manager.py) decides when to call them.
"""

from __future__ import annotations

import shlex
import time

from ...compile.naming import LABEL, VOLUME_LABEL
from ...compile.plan import Plan, add_instances
from .tasks import TASK_LABEL


class SwarmError(RuntimeError):
    """Swarm did not do what the plan asks (tasks failed, timed out, an agent did not answer)."""


def constraints(placement: tuple[tuple[str, str], ...]) -> list[str]:
    """Swarm placement constraints for a blueprint's `placement` mapping."""
    out = []
    for key, value in placement:
        if key == "hostname":
            out.append(f"node.hostname=={value}")
        elif key == "role":
            out.append(f"node.role=={value}")
        else:
            out.append(f"node.labels.{key}=={value}")
    return out


def _argv(value) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


def create_network(client, name: str, subnet: str):
    """An attachable overlay network with the plan's subnet, marked as ours."""
    from docker.types import IPAMConfig, IPAMPool

    return client.networks.create(name, driver="overlay", attachable=True, labels={LABEL: "1"},
                                  ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))


def create_service(client, plan: Plan, label: str) -> tuple[object, tuple[int, int]]:
    """The service of blueprint `label`; returns it and the (CPU quota, memory) its tasks start with."""
    from docker.types import EndpointSpec, NetworkAttachmentConfig, Resources, RestartPolicy, ServiceMode

    blueprint = plan.model.blueprint(label)
    service = plan.model.services[blueprint.service]
    sample = plan.instances_of(label)[0] if plan.instances_of(label) else None
    if sample is None:  # replicas: 0; the profile is needed all the same
        sample = add_instances(plan, label, 1)[0]
        plan.instances.remove(sample)
    env = sample.environment()
    env["FOGIFY_INSTANCE"] = "{{.Service.Name}}.{{.Task.Slot}}"
    created = client.services.create(
        service.image,
        command=_argv(service.entrypoint),
        args=_argv(service.command),
        name=label,
        hostname="{{.Service.Name}}.{{.Task.Slot}}",
        env=[f"{k}={v}" for k, v in env.items()],
        labels={LABEL: "1"},
        # the model's labels first: ours must win (a model's `fogify-net: "0"` would hide its tasks from cleanup)
        container_labels={**dict(service.labels), LABEL: "1", TASK_LABEL: label},
        networks=[NetworkAttachmentConfig(a.network) for a in blueprint.networks],
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        mode=ServiceMode("replicated", replicas=len(plan.instances_of(label))),
        resources=Resources(cpu_limit=round(sample.cpus * 1e9) or None, mem_limit=sample.memory or None),
        constraints=constraints(blueprint.placement) or None,
        restart_policy=RestartPolicy(condition="any", delay=500_000_000),
        stop_grace_period=1_000_000_000,
        workdir=service.working_dir,
        user=service.user,
        cap_add=list(service.cap_add) or None,
        mounts=mounts(service) or None,
    )
    return created, (sample.cpu_quota, sample.memory)


def mounts(service) -> list:
    """The service's volumes and tmpfs as Swarm mounts.

    Each node makes the named and anonymous volumes of its own tasks, marked as a deploy's
    volumes are on one machine; a bind mount takes the path on the node the task runs on.
    """
    from docker.types import Mount

    made = [Mount(v.target, v.source or None, type="bind" if v.is_bind else "volume", read_only=v.read_only,
                  labels=None if v.is_bind else {LABEL: VOLUME_LABEL}) for v in service.volumes]
    for target, options in service.tmpfs:
        values = dict(option.split("=", 1) for option in options.split(",") if "=" in option)
        made.append(Mount(target, None, type="tmpfs", tmpfs_size=values.get("size"),
                          tmpfs_mode=int(values["mode"], 8) if "mode" in values else None))
    return made


def running_tasks(service) -> list[dict]:
    """The service's tasks that run now and are meant to."""
    return [task for task in service.tasks(filters={"desired-state": "running"})
            if task.get("Status", {}).get("State") == "running"]


def failures(service) -> list[str]:
    """Swarm's error messages of the service's failed or rejected tasks."""
    return sorted({t["Status"].get("Err", "") for t in service.tasks()
                   if t.get("Status", {}).get("State") in ("failed", "rejected") and t["Status"].get("Err")})


def set_replicas(client, service, replicas: int) -> None:
    """The service's spec as it is with only the count changed, like `docker service scale`.

    docker-py's update rebuilds the task template, and Swarm then replaces every running task.
    """
    service.reload()
    spec = service.attrs["Spec"]
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    api = client.api
    api._raise_for_status(api._post_json(api._url("/services/{0}/update", service.id), data=spec,
                                         params={"version": service.version}))


def remove_deployment(manager) -> list[str]:
    """Remove every fogify-net service and overlay network (by label) from a Swarm; what was removed.

    `manager` is a Docker endpoint URL of a Swarm manager, or a DockerClient of one. Services go
    first; a network refuses removal until their tasks have left it, so it is retried.
    """
    import docker

    client = docker.DockerClient(base_url=manager, timeout=60) if isinstance(manager, str) else manager
    removed = []
    for service in client.services.list(filters={"label": f"{LABEL}=1"}):
        service.remove()
        removed.append(f"swarm service {service.name}")
    deadline = time.monotonic() + 120
    for network in client.networks.list(filters={"label": f"{LABEL}=1"}):
        while True:
            try:
                network.remove()
                removed.append(f"swarm network {network.name}")
                break
            except docker.errors.APIError as error:  # "has active endpoints" until the tasks are gone
                if time.monotonic() > deadline:
                    raise SwarmError(f"network {network.name} not removed: {error}") from error
                time.sleep(0.5)
    return removed
