"""How the Swarm backend reaches the agent of each node: over HTTP, on the management network only.

Each node's agent has its own token (`tokens`, by node hostname; `token` for
nodes not listed), so one node's token opens no other node. The agents speak
plain HTTP: between machines run them on a WireGuard address or through an
SSH tunnel (README, "From one machine to a cluster"), or give an https://
URL of a TLS-terminating proxy with `agents`; `verify` is passed to requests
(a CA bundle's path for such a proxy).

A call that gets no answer raises AgentError with status 503 (a request
waits CONNECT_TIMEOUT_S for the connection, then its own read timeout); once
the node's event poll has found it silent for events.NODE_TIMEOUT_S
(`silent`), calls fail at once, naming the node and since when, instead of
each waiting for its timeout. An agent that answers 404 (the task does not run
there) gives a 409, any other failure of the agent a 502: never the API's 500.
"""

from __future__ import annotations

import requests

from ...errors import FogifyError
from .services import SwarmError

AGENT_PORT = 5500
CONNECT_TIMEOUT_S = 3.0  # a node that is gone does not refuse: a new connection waits this long


class AgentError(SwarmError, FogifyError):
    """A node's agent did not answer (503), answered that the task is not there (409), or failed (502)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


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
        self.silent: dict[str, str] = {}  # node hostname -> since when its agent does not answer (events.py)

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

    def call(self, hostname: str, method: str, path: str, body: dict | None, timeout: float = 60,
             probe: bool = False) -> dict:
        """One request to `hostname`'s agent; its JSON answer, or AgentError with the agent's message.
        `timeout` is the read timeout; a node known to be `silent` is not asked unless `probe`."""
        since = self.silent.get(hostname)
        if since is not None and not probe:
            raise AgentError(f"node {hostname} does not answer since {since}", 503)
        url = self.url(hostname).rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.token_of(hostname)}"}
        try:
            response = self._http.request(method, url, json=body, timeout=(CONNECT_TIMEOUT_S, timeout),
                                          headers=headers)
        except requests.RequestException as error:
            raise AgentError(f"the agent of node {hostname} at {url} did not answer: {error}", 503) from error
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise AgentError(f"agent of {hostname}: {path} answered {response.status_code}: {message}",
                             409 if response.status_code == 404 else 502)
        return response.json()
