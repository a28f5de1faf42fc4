"""POST /actions/<type>/ with {"params": {...}}: Fogify's actions and fogify-net's faults."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from fogify_net.errors import BadRequest, NotFound
from fogify_net.model.actions import ACTION_TYPES, normalize
from fogify_net.model.errors import shown

from . import controller

bp = Blueprint("actions", __name__)


@bp.post("/actions/<action_type>/")
def act(action_type: str):
    body = request.get_json(silent=True)
    kind, _ = normalize(action_type, {})
    if kind not in ACTION_TYPES:
        raise NotFound(f"unknown action type {shown(action_type)} (use {', '.join(sorted(ACTION_TYPES - {'noop'}))})")
    if not isinstance(body, dict) or not isinstance(body.get("params"), dict):
        raise BadRequest('params: send a JSON body {"params": {...}}')
    kind, params = normalize(action_type, body["params"])
    result = controller().act(kind, params)
    return jsonify(message="OK", **result)
