"""Errors the API turns into HTTP answers; the library raises them, the API maps them."""

from __future__ import annotations


class FogifyError(Exception):
    """Base of the errors a user can act on; `status` is the HTTP status the API answers with."""

    status = 500


class BadRequest(FogifyError):
    status = 400


class Forbidden(FogifyError):
    status = 403


class NotFound(FogifyError):
    status = 404


class Conflict(FogifyError):
    status = 409


class Unavailable(FogifyError):
    """A part of the deployment does not answer now (a Swarm node's agent): try again later."""

    status = 503
