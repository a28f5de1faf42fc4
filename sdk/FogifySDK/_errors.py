"""The one exception type the SDK raises, and the warning it gives about unfaithful metrics."""

from __future__ import annotations

from typing import Any


class ExceptionFogifySDK(Exception):
    """Anything that went wrong: a bad argument, a server error, a timeout.

    Fogify's SDK raised this for every problem, and notebooks catch it by name,
    so we keep a single type. ``message`` is the server's own ``{"message": ...}``
    when the error came from the API (so callers can show it unchanged),
    ``status_code`` its HTTP status, ``payload`` the decoded answer, and
    ``field`` the field path the API blamed (400 answers to a bad model), if any.
    """

    def __init__(self, message: str, status_code: int | None = None, payload: Any = None,
                 context: str | None = None):
        self.message = message
        self.status_code = status_code
        self.payload = payload
        self.field = payload.get("field") if isinstance(payload, dict) else None
        super().__init__(f"{message} ({context})" if context else message)


class FidelityWarning(UserWarning):
    """Metrics were read from a window in which the emulation was not faithful (fogify-net's monitor).

    Raised through :mod:`warnings`, so a notebook shows it once per place and can
    silence it (``warnings.simplefilter("ignore", FidelityWarning)``) or turn it
    into an error. :meth:`FogifySDK.fidelity` tells what was degraded and why.
    """
