"""The facts of this machine that compile needs: its CPU clock, CPU count and memory.

Read here, outside the pure compile layer, so that a plan can be made from
given facts (tests, a dry run for another machine) without touching /sys.
"""

from __future__ import annotations

import os
import re

from ..compile.resources import HostFacts


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
