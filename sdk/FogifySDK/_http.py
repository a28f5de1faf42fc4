"""Pure helpers for talking to the API: base URLs and error messages."""

from __future__ import annotations

from typing import Any

import requests


def normalise_base_url(url: str) -> str:
    """Return ``url`` with a scheme and without a trailing slash.

    Users write the controller's address three ways: ``http://host:5000``,
    ``https://host:5000`` and bare ``host:5000`` (Fogify's own examples). A bare
    address means plain HTTP, which is what the API serves by default. The
    trailing slash is dropped so that ``base + "/topology/"`` has no ``//``.
    """
    text = (url or "").strip()
    if not text:
        raise ValueError("the API url is empty")
    if not text.lower().startswith(("http://", "https://")):
        text = "http://" + text
    return text.rstrip("/")


def decode_json(response: requests.Response) -> Any:
    """The JSON body of ``response``, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def server_message(response: requests.Response) -> str:
    """The most useful text of an error answer.

    The API answers errors with ``{"message": ...}``; Fogify's monitoring routes
    used ``{"Error": ...}``; anything else (an HTML page from a proxy) is shown
    shortened rather than dropped.
    """
    body = decode_json(response)
    if isinstance(body, dict):
        for key in ("message", "Error", "error"):
            if body.get(key):
                return str(body[key])
    text = (response.text or "").strip()
    if text:
        return text if len(text) <= 300 else text[:300] + "..."
    return response.reason or f"HTTP {response.status_code}"


def is_ok(answer: Any) -> bool:
    """True when an answer carries Fogify's success mark ``{"message": "OK"}``."""
    return isinstance(answer, dict) and str(answer.get("message", "")).upper() == "OK"
