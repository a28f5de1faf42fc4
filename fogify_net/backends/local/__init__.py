"""The local backend: the plan as a Mininet network of Docker hosts on this machine.

- `manager`: LocalBackend, the Backend that brings the plan up, changes it at
  runtime and tears it down.
- `containers`: the instances' containers (start, kill, remove); `checks`:
  what is refused before anything is made.
- `dockerhost`, `bridge`: the Mininet node classes (a Docker container host,
  a Linux bridge switch, links whose veths are made in batches).
- `shaper`: keeps the kernel's shaping equal to the plan's (tc, nftables, the
  delay line), applying only differences.
"""

from .manager import LocalBackend

__all__ = ["LocalBackend"]
