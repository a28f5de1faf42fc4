"""What a per-node agent sees of Swarm: the local tasks, their namespaces and interfaces.

An agent asks its own daemon only: Swarm labels every task container with
`com.docker.swarm.service.name`, `.task.id`, `.task.name` (`<service>.<slot>.<task id>`)
and `.node.id`, so the node's `docker ps` is the list of local instances and
their slots. Every container's init pid is in the host pid namespace, so its
network namespace is `/proc/<pid>/ns/net`.

On an overlay network a task has one veth per network: the container end
holds the address from the network's subnet (that is how the interface is
found; its name, eth0 or eth1, depends on attachment order), and the other
end is a port of the bridge `br0` in Docker's per-network namespace on that
node, `<exec-root>/netns/<n>-<network id[:10]>`, beside the `vxlan0` device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from ...compile.naming import LABEL
from ...host.kernel import in_netns, run

SERVICE_LABEL = "com.docker.swarm.service.name"
TASK_NAME_LABEL = "com.docker.swarm.task.name"
TASK_ID_LABEL = "com.docker.swarm.task.id"
NODE_LABEL = "com.docker.swarm.node.id"
TASK_LABEL = "fogify-net.label"  # the label (service) a task container of fogify-net belongs to


def is_ours(labels: dict[str, str]) -> bool:
    """A container of one of fogify-net's Swarm tasks: our mark, on a Swarm task of the service its
    label names. The agent acts on nothing else, and reports nothing else."""
    return bool(labels.get(LABEL) == "1" and labels.get(TASK_ID_LABEL)
                and labels.get(SERVICE_LABEL) and labels.get(SERVICE_LABEL) == labels.get(TASK_LABEL))


@dataclass(frozen=True)
class Task:
    """One running task container on this node."""

    service: str
    slot: int
    task_id: str
    node_id: str
    container_id: str
    pid: int

    @property
    def instance(self) -> str:
        """fogify-net's instance name, `<label>.<slot>`, when services are named by label."""
        return f"{self.service}.{self.slot}"

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"


@dataclass(frozen=True)
class Attachment:
    """A task's interface on one network, seen from inside its namespace."""

    device: str
    address: IPv4Interface
    peer_ifindex: int  # the veth's other end, in Docker's namespace of the network


def task_from_labels(container_id: str, pid: int, labels: dict[str, str]) -> Task | None:
    """The Task a Swarm container is, from its labels; None for a container Swarm did not start."""
    service = labels.get(SERVICE_LABEL)
    name = labels.get(TASK_NAME_LABEL, "")
    match = re.fullmatch(rf"{re.escape(service or '')}\.(\d+)\.\w+", name)
    if service is None or match is None:  # global services name tasks <service>.<node id>.<task id>
        return None
    return Task(service, int(match[1]), labels.get(TASK_ID_LABEL, ""), labels.get(NODE_LABEL, ""), container_id, pid)


def local_tasks(client, service: str | None = None) -> list[Task]:
    """Running task containers of `service` (all services when None) on the daemon of `client`, by slot."""
    label = SERVICE_LABEL if service is None else f"{SERVICE_LABEL}={service}"
    tasks = []
    for container in client.containers.list(filters={"label": label, "status": "running"}):
        container.reload()
        task = task_from_labels(container.id, container.attrs["State"]["Pid"], container.labels)
        if task is not None:
            tasks.append(task)
    return sorted(tasks, key=lambda t: (t.service, t.slot))


def has_link(pid: int, device: str) -> bool:
    """A network device of this name exists in the namespace of the task with pid `pid`."""
    return any(link["ifname"] == device for link in json.loads(run(in_netns(pid, ["ip", "-json", "link", "show"]))))


def attachment(pid: int, subnet: IPv4Network | str) -> Attachment:
    """The interface of the task with pid `pid` whose address lies in `subnet`."""
    subnet = IPv4Network(subnet)
    links = {link["ifname"]: link for link in json.loads(run(in_netns(pid, ["ip", "-json", "link", "show"])))}
    for entry in json.loads(run(in_netns(pid, ["ip", "-json", "-4", "addr", "show"]))):
        for info in entry.get("addr_info", []):
            address = IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            if address.ip in subnet:
                device = entry["ifname"]
                return Attachment(device, address, int(links[device].get("link_index", 0)))
    raise LookupError(f"no interface in {subnet} in the namespace of pid {pid}")
