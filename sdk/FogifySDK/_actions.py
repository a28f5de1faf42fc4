"""Action types and their routes."""

from __future__ import annotations

from enum import Enum

from ._errors import ExceptionFogifySDK


class Action_type(Enum):  # Fogify's public name, kept for compatibility
    """The actions ``POST /actions/<type>/`` accepts.

    The first six are Fogify's; the rest are what fogify-net adds.
    """

    HORIZONTAL_SCALING = "HORIZONTAL_SCALING"
    VERTICAL_SCALING = "VERTICAL_SCALING"
    NETWORK = "NETWORK"
    STRESS = "STRESS"
    COMMAND = "COMMAND"
    UPDATE_LINKS = "UPDATE_LINKS"
    LINK_DOWN = "LINK_DOWN"
    LINK_UP = "LINK_UP"
    PARTITION = "PARTITION"
    HEAL = "HEAL"
    CRASH = "CRASH"
    RESTART = "RESTART"


# Route of each action; UPDATE_LINKS is the one whose name differs (Fogify's `/links/`).
ACTION_PATHS = {kind: f"/actions/{kind.value.lower()}/" for kind in Action_type}
ACTION_PATHS[Action_type.UPDATE_LINKS] = "/actions/links/"

_ALIASES = {"LINKS": Action_type.UPDATE_LINKS}


def parse_action_type(value: Action_type | str) -> Action_type:
    """The action type named by ``value``.

    Case and ``-``/``_`` do not matter (``"network"``, ``"link-down"``), and
    the route's own name ``links`` means UPDATE_LINKS.
    """
    if isinstance(value, Action_type):
        return value
    key = str(value).strip().upper().replace("-", "_")
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return Action_type(key)
    except ValueError:
        known = ", ".join(kind.value for kind in Action_type)
        raise ExceptionFogifySDK(f"The action type {value} is not defined (known: {known}).") from None
