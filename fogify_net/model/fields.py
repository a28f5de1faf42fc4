"""Readers of the generic shapes of a compose document: mappings, lists, names, booleans, text.

Each raises ModelError naming the field, so every part of the parser reports
problems the same way.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .errors import ModelError, join, shown

# Names end up in DNS names (tasks.<label>.<network>) and instance names (<label>.<n>): no dots.
# \Z, not $: "$" matches before a trailing newline, and a newline in an ip/tc/nft batch is a new command.
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?\Z")


def mapping(value: Any, path: str, what: str) -> dict:
    if value is None:
        raise ModelError(path, f"{what} is missing")
    if not isinstance(value, dict):
        raise ModelError(path, f"expected a mapping for {what}, got {type(value).__name__}")
    return value


def sequence(value: Any, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelError(path, f"expected a list, got {type(value).__name__}")
    return value


def known_keys(raw: dict, path: str, allowed: set[str]) -> None:
    for key in raw:
        if not isinstance(key, str):
            raise ModelError(path, f"keys must be text, got {shown(key)}")
        if key not in allowed and not key.startswith("x-"):
            raise ModelError(join(path, key), f"unknown field (expected one of: {', '.join(sorted(allowed))})")


# An instance's hostname is `<label>.<n>`, at most 64 characters (and `<label>` a DNS label, 63 at most).
MAX_NAME = 48


def valid_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ModelError(
            path, f"invalid name {shown(value)}: use letters, digits, '-' and '_' (no dots, no spaces)"
        )
    if len(value) > MAX_NAME:
        raise ModelError(path, f"name {value[:20]!r}... is {len(value)} characters long, at most {MAX_NAME}")
    return value


def unique(names: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ModelError(join(path, i), f"duplicate {what} {shown(name)}")
        seen.add(name)


def named_list(raw: Any, path: str, parse: Callable[[Any, str], Any]) -> dict:
    items = [parse(item, join(path, i)) for i, item in enumerate(sequence(raw, path))]
    unique([item.name for item in items], path, "name")
    return {item.name: item for item in items}


def boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ModelError(path, f"expected true or false, got {shown(value)}")


def optional_text(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ModelError(path, f"expected text, got {type(value).__name__}")
    return str(value)
