"""How the Swarm backend reaches the agent of each node: over HTTP, on the management network only.

Each node's agent has its own token (`tokens`, by node hostname; `token` for
nodes not listed), so one node's token opens no other node. The agents speak
plain HTTP: between machines run them on a WireGuard address or through an
SSH tunnel (README, "From one machine to a cluster"), or give an https://
URL of a TLS-terminating proxy with `agents`; `verify` is passed to requests
(a CA bundle's path for such a proxy).
"""

from __future__ import annotations

import requests

from .services import SwarmError

AGENT_PORT = 5500


class AgentClient:
    """Calls node agents by node hostname; a node not named in `agents` is reached at
    http://<its Swarm address>:<port>."""

    def __init__(self, client, agents: dict[str, str] | None = None, port: int = AGENT_PORT,
                 token: str | None = None, tokens: dict[str, str] | None = None, verify: bool | str = True):
        self.client = client  # the Swarm manager's Docker client, to find nodes' addresses
        self.agents = dict(agents or {})
        self.port = port
        self.token = token
        self.tokens = dict(tokens or {})
        self._http = requests.Session()
        self._http.verify = verify

    def token_of(self, hostname: str) -> str:
        token = self.tokens.get(hostname, self.token)
        if not token:
            raise SwarmError(f"no token for the agent of {hostname} (give it in --agent-tokens, "
                             "or FOGIFY_AGENT_TOKEN for every node)")
        return token

    def url(self, hostname: str) -> str:
        if hostname in self.agents:
            return self.agents[hostname]
        for node in self.client.nodes.list():
            if node.attrs["Description"]["Hostname"] == hostname:
                return f"http://{node.attrs['Status']['Addr']}:{self.port}"
        raise SwarmError(f"no Swarm node {hostname!r}")

    def call(self, hostname: str, method: str, path: str, body: dict | None, timeout: float = 60) -> dict:
        """One request to `hostname`'s agent; its JSON answer, or SwarmError with the agent's message."""
        url = self.url(hostname).rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.token_of(hostname)}"}
        try:
            response = self._http.request(method, url, json=body, timeout=timeout, headers=headers)
        except requests.RequestException as error:
            raise SwarmError(f"agent of {hostname} at {url} did not answer: {error}") from error
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise SwarmError(f"agent of {hostname}: {path} answered {response.status_code}: {message}")
        return response.json()
