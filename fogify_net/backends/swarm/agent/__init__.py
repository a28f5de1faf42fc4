"""`fogify-net agent`: the per-node worker of the Swarm backend.

One agent runs on every Swarm node, beside that node's dockerd, and does what
must happen on the node itself: shaping inside each local task's network
namespace, commands and stress in its containers, resource changes in its
cgroups, link state. The controller reaches it over the management network
only (never over the emulated overlays), with the same bearer token scheme
as the API; it listens on 127.0.0.1 unless told otherwise.

The agent keeps what it installed per task and network, so a change is a
difference (`tc class replace` of the live class, no burst of unshaped
traffic), and a task it has never seen (new, or restarted by Swarm) gets the
whole shaping. It also samples its tasks' counters for the controller's
metric store (`/samples/`), so metrics come from every node. Requests name containers by their full Docker id; the agent
finds their init pid (hence namespace and cgroups) from its own daemon. It follows that
daemon's events for fogify-net's tasks (events.py) and answers the controller's long poll
(`/events/`), so a task that dies on the node is known at once.
"""

from .server import create_app, serve
from .worker import Agent

__all__ = ["Agent", "create_app", "serve"]
