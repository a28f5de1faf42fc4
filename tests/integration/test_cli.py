"""The fogify-net command as a user runs it: deploy (starting the API), status, undeploy, dry run, doctor."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from .conftest import BASE_IMAGE, assert_clean, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

MODEL = {
    "services": {"app": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
    "x-fogify": {
        "nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}, "memory": "128M"}}],
        "networks": [{"name": "lan", "bidirectional": {"bandwidth": "20Mbps", "latency": {"delay": "4ms"}}}],
        "topology": [{"node": "n", "service": "app", "label": "web", "replicas": 2, "networks": ["lan"]}],
    },
}


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "FOGIFY_URL": "http://127.0.0.1:5077", "FOGIFY_RUN_DIR": str(tmp_path / "run"),
           "FOGIFY_LOG_DIR": str(tmp_path / "log"), "FOGIFY_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["fogify-net", *args], capture_output=True, text=True, env=env, timeout=300)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    return run


def test_deploy_status_undeploy_from_the_command_line(cli, tmp_path):
    before = snapshot()
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump(MODEL))
    deployed = cli("deploy", str(model))
    out = deployed.stdout
    assert "status: running" in out and "shaping: " in out
    # Not a terminal: one plain progress line per change, no carriage-return frames.
    assert "deploy process: 2/2 instances" in deployed.stderr and "\r" not in deployed.stderr
    assert "web.1" in out and "web.2" in out and "20Mbit/s 2ms" in out
    status = cli("status").stdout
    assert "web.2" in status
    ping = cli("exec", "web.1", "ping", "-c", "2", "-i", "0.2", "10.100.0.3").stdout
    assert "2 received" in ping
    assert "undeployed" in cli("undeploy").stdout
    assert not (tmp_path / "run" / "api.pid").exists()  # the API the deploy started is gone again
    assert "no fogify-net API runs" in cli("status").stdout
    assert_clean(before)


def test_bad_models_fail_with_the_field_named(cli, tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(MODEL))
    bad["x-fogify"]["topology"][0]["node"] = "nope"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    for args in (["deploy", "--dry-run", str(path)], ["deploy", str(path)]):
        result = cli(*args, check=False)
        assert result.returncode == 1
        assert "x-fogify.topology[0].node: unknown node 'nope'" in result.stderr, result.stderr
    cli("undeploy")  # stops the API the second deploy started


def test_dry_run_prints_the_plan_and_commands_and_touches_nothing(cli, tmp_path):
    before = snapshot()
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(MODEL))
    out = cli("deploy", "--dry-run", str(path)).stdout
    assert "link add name fgn-lan type bridge" in out
    assert "qdisc replace dev eth0 root handle 1: htb default 1" in out
    assert "table bridge fogify_net" in out
    assert snapshot() == before


def test_doctor_names_the_mechanism():
    out = subprocess.run(["fogify-net", "doctor"], capture_output=True, text=True).stdout
    assert "tc netem" in out and "shaping: " in out


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="would install a systemd unit on this machine")
def test_agent_script_runs_the_swarm_agent_with_its_token_off_the_command_line(machine, tmp_path):
    import requests

    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "agent.sh")
    spy = tmp_path / "bin"  # a curl that records its arguments, then runs the real one
    spy.mkdir()
    (spy / "curl").write_text(f'#!/bin/sh\necho "$@" >>{tmp_path}/curl-argv\nexec /usr/bin/curl "$@"\n')
    (spy / "curl").chmod(0o755)
    env = {**os.environ, "FOGIFY_NET_CONF": str(tmp_path / "conf"), "FOGIFY_NET_RUN": str(tmp_path / "run"),
           "PATH": f"{spy}:{os.environ['PATH']}"}

    def agent(*args):
        return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=60)

    started = agent("start", "--host", "127.0.0.1", "--port", "5598")
    try:
        assert started.returncode == 0, started.stderr
        token = (tmp_path / "conf" / "agent-token").read_text()
        assert len(token) >= 24 and (tmp_path / "conf" / "agent-token").stat().st_mode & 0o077 == 0
        url = "http://127.0.0.1:5598/health/"
        assert requests.get(url, timeout=5).status_code == 401
        assert "tasks" in requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        pid = (tmp_path / "run" / "agent.pid").read_text().strip()
        with open(f"/proc/{pid}/cmdline") as f:
            assert token not in f.read()
        assert (tmp_path / "curl-argv").exists() and token not in (tmp_path / "curl-argv").read_text()
        assert token not in started.stdout + started.stderr
        assert agent("status").returncode == 0
    finally:
        assert agent("stop").returncode == 0
    assert agent("status").returncode == 3
