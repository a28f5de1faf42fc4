"""POST /generate-network-distribution/<name>/: a custom delay distribution from a ping trace, as in Fogify."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from fogify_net.errors import BadRequest
from fogify_net.model.distributions import summary

from . import controller

bp = Blueprint("distributions", __name__)


@bp.post("/generate-network-distribution/<name>/")
def generate(name: str):
    """The trace is multipart field `file` (Fogify's shape) or the raw body: ping's output, or one delay
    in ms a line. The answer is Fogify's: the statistics netem's stats tool prints (mu, sigma, rho)."""
    upload = request.files.get("file")
    if upload is not None:
        trace = upload.read().decode("utf-8", errors="replace")
    elif request.form.get("file"):
        trace = request.form["file"]
    else:
        trace = request.get_data(as_text=True)
    if not trace.strip():
        raise BadRequest("file: send the output of ping (multipart field 'file')")
    distribution = controller().generate_distribution(name, trace)
    return jsonify({"generated-distribution": summary(distribution)})
