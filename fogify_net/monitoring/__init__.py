"""Monitoring: per-instance cgroup, interface and app counters sampled into a SQLite store."""

from .sampler import Sampler, SampleTarget
from .store import MetricStore

__all__ = ["MetricStore", "SampleTarget", "Sampler"]
