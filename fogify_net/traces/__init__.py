"""Traces at runtime: the player that makes links follow their traces (see player.py)."""

from .player import Playback, TracePlayer

__all__ = ["Playback", "TracePlayer"]
