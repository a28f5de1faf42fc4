"""The Swarm backend: the same model on a Docker Swarm cluster.

- `manager`: SwarmBackend, the Backend that deploys a plan as overlay
  networks and services, and drives the node agents.
- `services`: the Swarm objects (networks, services, their tasks).
- `agents`, `wire`: how the backend calls the agents, and the bodies both ends share.
- `agent/`: `fogify-net agent`, one per node: rate and loss inside each local
  task's network namespace, commands, stress, resource limits, metric samples.
- `delay`: delay and jitter on each overlay network's bridge on the node,
  with the user-space delay line (`fogify-delayd`).
- `tasks`: how an agent finds the Swarm tasks on its node, their namespaces
  and interfaces.
"""

from .manager import SwarmBackend
from .services import remove_deployment

__all__ = ["SwarmBackend", "remove_deployment"]
