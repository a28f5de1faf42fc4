"""Talking to the API over HTTP: its routes, base URLs, error messages, and the request methods.

Every call of the SDK goes through :class:`HttpMixin`, so authentication,
timeouts and turning error answers into :class:`ExceptionFogifySDK` happen in
one place. The other helpers are pure.
"""

from __future__ import annotations

from typing import Any

import requests

from ._errors import ExceptionFogifySDK

# The API's routes (Fogify's paths, trailing slash included, and fogify-net's).
TOPOLOGY_URL = "/topology/"
MONITORING_URL = "/monitorings/"
ANNOTATIONS_URL = "/annotations/"
PACKETS_URL = "/packets/"
STATUS_URL = "/status/"
SCENARIOS_URL = "/scenarios/"
DISTRIBUTION_URL = "/generate-network-distribution/"
FIDELITY_URL = "/fidelity/"


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


class HttpMixin:
    """Requests to the API at ``url``, with ``token`` as ``Authorization: Bearer`` when set.

    The other mixins call the API only through :meth:`_send` and :meth:`_call`.
    """

    url: str
    token: str | None
    _session: requests.Session

    poll_interval: float = 1.0  # seconds between progress polls
    http_timeout: float = 60.0  # seconds to wait for one answer (reads), unless a call needs longer

    def get_url(self, path: str = "") -> str:
        """The absolute URL of ``path`` on the API (bare ``host:port`` means ``http://``)."""
        try:
            return normalise_base_url(self.url) + path
        except ValueError as error:
            raise ExceptionFogifySDK(str(error)) from None

    def _send(self, method: str, path: str, *, timeout: float | None = -1.0,
              headers: dict | None = None, **kwargs: Any) -> requests.Response:
        """One request; any failure becomes an ExceptionFogifySDK with the server's message.

        ``timeout=-1`` means :attr:`http_timeout`; None waits as long as the server takes.
        """
        url = self.get_url(path)
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        read_timeout = self.http_timeout if timeout == -1.0 else timeout
        try:
            response = self._session.request(method, url, headers=all_headers,
                                             timeout=(10.0, read_timeout), **kwargs)
        except requests.RequestException as error:
            raise ExceptionFogifySDK(f"Cannot reach the Fogify API at {url}: {error}") from None
        if response.status_code >= 400:
            raise ExceptionFogifySDK(server_message(response), status_code=response.status_code,
                                     payload=decode_json(response),
                                     context=f"HTTP {response.status_code}, {method} {path}")
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose answer must be JSON; Fogify's ``{"Error": ...}`` answers raise too."""
        response = self._send(method, path, **kwargs)
        body = decode_json(response)
        if body is None and response.content:
            raise ExceptionFogifySDK(f"The API answered {method} {path} with something that is not JSON",
                                     status_code=response.status_code)
        if isinstance(body, dict) and "Error" in body and "message" not in body:
            raise ExceptionFogifySDK(str(body["Error"]), status_code=response.status_code, payload=body,
                                     context=f"{method} {path}")
        return body
