"""Errors of the model layer: every problem names the field it is about."""

from __future__ import annotations

import reprlib


class ModelError(ValueError):
    """A problem in the user's model, located by a field path.

    The path reads like the YAML it points into, for example
    ``x-fogify.networks[0].uplink.bandwidth``, so the message alone tells the
    user where to look.
    """

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


def join(path: str, key: str | int) -> str:
    """Extend a field path by a mapping key or a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 80
_SHOWN.maxother = 80
_SHOWN.maxlong = 40
_SHOWN.maxlevel = 2
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4


def shown(value: object) -> str:
    """A user's value for an error message, as repr() but cut short: a message never repeats a
    megabyte of input (or an expanded alias bomb) back to its sender."""
    return _SHOWN.repr(value)
