"""Tokens: never on a command line or stdout, in root-only files, per Swarm node, compared without 500s."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fogify_net import cli
from fogify_net.backends.swarm.agent.server import create_app as agent_app
from fogify_net.backends.swarm.agents import AgentClient
from fogify_net.backends.swarm.services import SwarmError
from fogify_net.host.tokens import TokenFileError, bearer_matches, ensure_token_file, read_token_file
from fogify_net_api import create_app


class StubAgent:
    def info(self) -> dict:
        return {"node_id": "n", "hostname": "h", "tasks": []}


def test_a_token_on_the_command_line_is_refused():
    for command in (["api", "--token", "s3cret"], ["agent", "--token", "s3cret"]):
        result = subprocess.run([sys.executable, "-m", "fogify_net.cli", *command], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1 and "--token-file" in result.stderr


def test_a_made_token_goes_to_a_root_only_file_not_to_stdout(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FOGIFY_TOKEN", raising=False)
    monkeypatch.setattr(cli, "CONF_DIR", tmp_path)

    class Args:
        host, token, token_file = "0.0.0.0", None, None

    token = cli._api_token(Args)
    out = capsys.readouterr().out
    assert token not in out and str(tmp_path / "token") in out
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert cli._api_token(Args) == token  # the same file next time

    class Loopback:
        host, token, token_file = "127.0.0.1", None, None

    assert cli._api_token(Loopback) is None  # no token on loopback unless asked, as before


def test_token_files_others_can_read_are_refused(tmp_path):
    path = tmp_path / "t"
    path.write_text("abc\n")
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        read_token_file(path)
    path.chmod(0o600)
    assert read_token_file(path) == "abc"
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(TokenFileError):
        read_token_file(link)
    assert len(ensure_token_file(tmp_path / "new")) >= 40


def test_non_ascii_authorization_is_a_401_on_the_api_and_the_agent():
    assert not bearer_matches("Bearer t\u00e9st", "test") and bearer_matches("Bearer test", "test")
    for client in (create_app(object(), token="test").test_client(), agent_app(StubAgent(), "test").test_client()):
        environ = {"HTTP_AUTHORIZATION": "Bearer \u00e9\u00ff"}  # Latin-1 on the wire
        assert client.get("/health/" if client.application.name != "fogify_net_api.app" else "/status/",
                          environ_base=environ).status_code == 401


def test_the_agent_wants_its_token_on_loopback_too():
    client = agent_app(StubAgent(), "node-token").test_client()
    assert client.get("/health/").status_code == 401
    assert client.get("/health/", headers={"Authorization": "Bearer node-token"}).status_code == 200
    with pytest.raises(ValueError):
        agent_app(StubAgent(), "")


def test_each_node_gets_its_own_token(tmp_path):
    client = AgentClient(None, {"a": "http://a:1", "b": "http://b:1", "c": "http://c:1"},
                         tokens={"a": "ta", "b": "tb"})
    sent = {}

    def request(method, url, json=None, timeout=None, headers=None):
        sent[url.split("//")[1].split(":")[0]] = headers["Authorization"]

        class Answer:
            status_code = 200

            @staticmethod
            def json():
                return {}

        return Answer()

    client._http.request = request
    client.call("a", "get", "/health/", None)
    client.call("b", "get", "/health/", None)
    assert sent == {"a": "Bearer ta", "b": "Bearer tb"}
    with pytest.raises(SwarmError, match="no token for the agent of c"):
        client.call("c", "get", "/health/", None)


def test_the_controllers_token_file_lists_nodes(tmp_path):
    path = tmp_path / "agent-tokens"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"# node token\nnode-1 aaa\nnode-2 bbb\n")
    os.close(fd)
    assert cli._agent_tokens(str(path)) == {"node-1": "aaa", "node-2": "bbb"}
