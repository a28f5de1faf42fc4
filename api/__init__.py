"""fogify-net's REST API: Fogify's routes and shapes, on top of the controller."""

from .app import create_app

__all__ = ["create_app"]
