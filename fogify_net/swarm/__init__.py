"""The Swarm backend: the same model on a Docker Swarm cluster.

- `backend`: SwarmBackend, the Backend (fogify_net.backends) that deploys a plan
  as overlay networks and services, and drives the node agents.
- `agent`: `fogify-net agent`, one per node: rate and loss inside each local
  task's network namespace, commands, stress, resource limits, metric samples.
- `delay`: delay and jitter on each overlay network's bridge on the node,
  with the user-space delay line (`fogify-delayd`).
- `tasks`: how an agent finds the Swarm tasks on its node, their namespaces
  and interfaces.
- `cluster`: extra Docker daemons, each in its own network namespace, joined
  into a Swarm over a veth "underlay": a cluster on one machine, for tests.
"""
