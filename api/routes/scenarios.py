"""Server-side scenarios: /scenarios/ (list), /scenarios/<name>/ (start, follow, cancel)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from . import controller

bp = Blueprint("scenarios", __name__)


@bp.get("/scenarios/")
def listing():
    c = controller()
    model = c.emulation.plan.model if c.emulation else None
    available = [
        {"name": s.name, "duration": s.duration, "actions": len(s.actions), "error": s.error}
        for s in (model.scenarios.values() if model else [])
    ]
    return jsonify(available=available, runs=[run.as_dict() for run in c.scenarios.runs()])


@bp.post("/scenarios/<name>/")
def start(name: str):
    run = controller().start_scenario(name)
    return jsonify(message="OK", name=run.name, start=run.start, end=run.end)


@bp.get("/scenarios/<name>/")
def follow(name: str):
    return jsonify(controller().scenarios.get(name).as_dict())


@bp.delete("/scenarios/<name>/")
def cancel(name: str):
    controller().scenarios.cancel(name)
    return jsonify(message="cancelled")
