"""CPU and memory limits of an instance from its node profile.

A node of `cores` x `clock_speed` MHz gets cores * clock_speed / host_mhz CPUs
of the host, enforced as a CFS quota (cpu_quota / cpu_period). We use a quota,
not Docker's NanoCPUs, because a quota can be changed while the container runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

CPU_PERIOD = 100_000  # microseconds, the kernel's default CFS period
MIN_QUOTA = 1_000  # the kernel refuses quotas below 1 ms


@dataclass(frozen=True)
class HostFacts:
    """What compile needs to know about the machine; read once, overridable for reproducibility."""

    cpu_mhz: float
    cpus: int
    memory: int  # bytes


def read_host_facts(cpu_mhz: float | None = None) -> HostFacts:
    """Facts of this machine. FOGIFY_HOST_MHZ (or `cpu_mhz`) overrides the measured clock."""
    override = cpu_mhz or os.environ.get("FOGIFY_HOST_MHZ")
    mhz = float(override) if override else _cpu_mhz()
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return HostFacts(cpu_mhz=mhz, cpus=os.cpu_count() or 1, memory=pages)


def _cpu_mhz() -> float:
    """The nominal clock of the first CPU: cpufreq's maximum, else /proc/cpuinfo, else 2400 (Fogify's default)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1000
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
        if match:
            return float(match.group(1))
    except OSError:
        pass
    return 2400.0


def cpu_quota(cpus: float) -> int:
    """The CFS quota (per CPU_PERIOD) that gives `cpus` CPUs."""
    return max(MIN_QUOTA, round(cpus * CPU_PERIOD))


def node_cpus(cores: int, clock_mhz: float, host: HostFacts) -> float:
    return cores * clock_mhz / host.cpu_mhz
