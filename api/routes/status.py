"""/status/ (what runs and how it is shaped) and the OpenAPI description."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify

from . import controller

bp = Blueprint("status", __name__)
SPEC = Path(__file__).parents[1] / "openapi.yaml"


@bp.get("/status/")
def status():
    c = controller()
    return jsonify({**c.report(), "capabilities": c.capabilities.as_dict()})


@bp.get("/openapi.yaml")
def openapi():
    return Response(SPEC.read_text(), mimetype="application/yaml")
