"""Monitoring: each round's samples of the deployment, its flow counters and annotations, in a SQLite store."""

from .sampler import Sampler
from .store import MetricStore

__all__ = ["MetricStore", "Sampler"]
