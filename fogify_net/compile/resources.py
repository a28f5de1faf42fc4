"""CPU and memory limits of an instance from its node profile.

A node of `cores` x `clock_speed` MHz gets cores * clock_speed / host_mhz CPUs
of the host, enforced as a CFS quota (cpu_quota / cpu_period). We use a quota,
not Docker's NanoCPUs, because a quota can be changed while the container runs.
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_PERIOD = 100_000  # microseconds, the kernel's default CFS period
MIN_QUOTA = 1_000  # the kernel refuses quotas below 1 ms


@dataclass(frozen=True)
class HostFacts:
    """What compile needs to know about the machine (fogify_net.host.facts reads it; tests make their own)."""

    cpu_mhz: float
    cpus: int
    memory: int  # bytes


def cpu_quota(cpus: float) -> int:
    """The CFS quota (per CPU_PERIOD) that gives `cpus` CPUs."""
    return max(MIN_QUOTA, round(cpus * CPU_PERIOD))


def node_cpus(node, host: HostFacts) -> float:
    """CPUs of the machine a node profile gets: cores x clock over the host clock, its exact `cpus`,
    or, with neither, all of them (a profile without a processor is not limited)."""
    if node.cpus is not None:
        return node.cpus
    if node.cores is not None and node.clock_mhz is not None:
        return node.cores * node.clock_mhz / host.cpu_mhz
    return float(host.cpus)
