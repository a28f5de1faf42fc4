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


def test_the_dry_run_and_the_status_table_show_the_traces(tmp_path):
    from fogify_net.dryrun import dry_run
    from fogify_net.render import status_table

    (tmp_path / "cell.csv").write_text("time_s,bandwidth\n0,2\n1,10\n")
    model = {"version": "3.7", "services": {"app": {"image": "img"}}, "x-fogify": {
        "nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "1G"}}],
        "networks": [{"name": "cell", "trace": {"file": "cell.csv", "start": "action", "loop": False}}],
        "topology": [{"node": "n", "service": "app", "label": "a", "networks": ["cell"]}]}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(model))
    row = next(line for line in dry_run(str(tmp_path / "m.yaml"), shaping="userspace").splitlines()
               if line.startswith("cell ") and "cell.csv" in line)
    assert row.split() == ["cell", "network", "cell", "bidirectional", "cell.csv", "step", "100ms", "2s", "once",
                           "by", "action"]
    report = {"status": "running", "shaping": {"mechanism": "userspace"}, "instances": [], "traces": [
        {"name": "cell", "target": "network cell", "state": "running", "position_s": 1.25, "steps": 2,
         "values": {"bandwidth_bps": 10_000_000, "delay_ms": 30.0, "loss_pct": 1.0},
         "lateness_ms": {"p50": 1.0, "p95": 2.5, "max": 3.0}}]}
    assert status_table(report).splitlines()[-1].split() == [
        "cell", "network", "cell", "running", "1.2s", "10Mbit/s", "30ms", "1%", "loss", "2", "2.5ms"]
