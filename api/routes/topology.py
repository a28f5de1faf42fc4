"""/topology/: deploy (POST), progress (GET) and undeploy (DELETE), as in Fogify."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from fogify_net.errors import BadRequest

from ..compat import network_rules, swarm_representation, swarm_tasks
from . import controller

bp = Blueprint("topology", __name__)


_CONTROL = {code: " " for code in (*range(0x20), 0x7F)}


def header_text(text: str, limit: int = 1000) -> str:
    """`text` as a safe header value: control characters (\\r, \\n, ...) become spaces and anything
    beyond ASCII a \\u escape (a header is Latin-1 on the wire; U+FFFD from container logs is not)."""
    return text.translate(_CONTROL).encode("ascii", "backslashreplace").decode("ascii")[:limit]


def _status_headers(response):
    c = controller()
    response.headers["X-Fogify-Status"] = c.status
    response.headers["X-Fogify-Message"] = header_text(c.message)
    return response


@bp.get("/topology/")
def progress():
    """`fogify_<label>` -> task objects, as Fogify on Swarm; the status word travels in headers."""
    c = controller()
    if c.status == "error":
        return _status_headers(jsonify(message=c.message, status=c.status)), 500
    return _status_headers(jsonify(swarm_tasks(c.tasks())))


@bp.post("/topology/")
def deploy():
    """Deploy the fogified compose file sent as multipart field `file` (or as the raw body).

    The trace files the model names come as multipart fields `traces`, each with
    the file name the model gives it.
    """
    text = None
    upload = request.files.get("file")
    if upload is not None:
        text = upload.read().decode("utf-8", errors="replace")
    elif request.form.get("file"):
        text = request.form["file"]
    elif request.data:
        text = request.get_data(as_text=True)
    if text is not None and not text.strip():
        raise BadRequest("file: the uploaded model is empty")
    files = {upload.filename: upload.read() for upload in request.files.getlist("traces") if upload.filename}
    plan = controller().deploy(text, files)
    response = jsonify(message="OK", swarm=swarm_representation(plan), networks=network_rules(plan))
    return _status_headers(response)


@bp.delete("/topology/")
def undeploy():
    controller().undeploy()
    return _status_headers(jsonify(message="The topology is down."))
