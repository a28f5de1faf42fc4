"""Mobility at the edges of the system: the CLI's uploads of trace files and the Swarm backend's refusal."""

from __future__ import annotations

import pytest
import yaml

from fogify_net.backends.swarm.manager import SwarmBackend
from fogify_net.cli import CliError, _trace_uploads
from fogify_net.errors import BadRequest


def test_the_cli_uploads_the_trace_files_a_model_names(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.csv").write_text("time_s,delay\n0,5\n")
    model = tmp_path / "m.yaml"
    text = yaml.safe_dump({"x-fogify": {"networks": [{"name": "n", "trace": [{"file": "t/a.csv"}]}]}})
    assert _trace_uploads(model, text) == [("traces", ("t/a.csv", b"time_s,delay\n0,5\n"))]
    assert _trace_uploads(model, "x-fogify: [") == []  # not YAML: the API says why
    with pytest.raises(CliError, match="cannot read trace file gone.csv"):
        _trace_uploads(model, yaml.safe_dump({"x-fogify": {"networks": [{"name": "n", "trace": "gone.csv"}]}}))


def test_swarm_refuses_to_move_a_task_and_says_why():
    with pytest.raises(BadRequest, match="replaces the task, so its processes would not keep running"):
        SwarmBackend.move(object.__new__(SwarmBackend), [], "a", "b", 0.0)
