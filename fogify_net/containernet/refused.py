"""What a Containernet or Mininet script may ask for that fogify-net does not do, refused early and
in words: the script stops with `fogify-net: <what>: <why>` instead of a traceback from deep inside,
before anything is deployed where possible."""

from __future__ import annotations

from ..model import ModelError


class Refused(ModelError):
    """A part of Mininet's or Containernet's API that fogify-net does not provide, and why."""


def refuse(what: str, why: str) -> None:
    raise Refused(what, why)
