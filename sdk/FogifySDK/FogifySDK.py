"""The FogifySDK client: build a model, deploy it, act on it, read its metrics.

Same calls, arguments and return shapes as Fogify's SDK, so its notebooks run
unchanged, with its bugs fixed (see README.md) and calls for what fogify-net
adds (status, server-side scenarios, faults, command results, effect()).
The module keeps Fogify's name so ``from FogifySDK.FogifySDK import ...`` works too.

:class:`FogifySDK` is a facade: it holds the client's state and takes its
calls from one mixin per job (``_model``, ``_deployment``, ``_metrics``,
``_actions``, ``_scenarios``, all over ``_http``). The mixins never import
this module.
"""

from __future__ import annotations

import logging
import os

import pandas as pd
import requests

from ._actions import Action_type, ActionsMixin
from ._deployment import DeploymentMixin
from ._errors import ExceptionFogifySDK
from ._frames import TimeLike, annotations_frame  # noqa: F401 - TimeLike: importable from here, as before
from ._http import (  # noqa: F401 - the routes: Fogify's module-level names, importable from here
    ANNOTATIONS_URL,
    MONITORING_URL,
    PACKETS_URL,
    SCENARIOS_URL,
    STATUS_URL,
    TOPOLOGY_URL,
    HttpMixin,
)
from ._metrics import MetricsMixin
from ._model import FOGIFY_FILE, ModelMixin  # noqa: F401 - FOGIFY_FILE: Fogify's name, importable from here
from ._scenarios import ScenariosMixin

__all__ = ["Action_type", "ExceptionFogifySDK", "FogifySDK"]

logger = logging.getLogger("FogifySDK")


class FogifySDK(DeploymentMixin, ScenariosMixin, ModelMixin, ActionsMixin, MetricsMixin, HttpMixin):
    """A client of one fogify-net (or Fogify) API, optionally holding a model.

    ``url`` is the API's address (``http://host:5000``, ``https://...`` or bare
    ``host:5000``). ``docker_compose`` is a compose file with an ``x-fogify``
    section; the model builders edit it before :meth:`deploy`. ``token`` (or the
    environment variable ``FOGIFY_TOKEN``) is sent as ``Authorization: Bearer``,
    which the API asks for when it listens beyond 127.0.0.1. ``poll_interval``
    and ``http_timeout`` (from :class:`HttpMixin`) may be set per client.
    """

    Action_type = Action_type
    logger = logger

    def __init__(self, url: str, docker_compose: str | None = None, token: str | None = None):
        self.url = url
        # strip: a token copied from `vagrant ssh -c` or a file often ends in "\r\n"
        self.token = (token if token is not None else os.environ.get("FOGIFY_TOKEN", "")).strip() or None
        self.docker_compose: str | None = None
        self.docker_swarm_rep: dict | None = None
        self.nodes: list = []
        self.networks: list = []
        self.topology: list = []
        self.scenarios: list = []
        self.services: list = []
        self.data: dict = {}
        self.annotations: pd.DataFrame = annotations_frame([])
        self.fidelity_status: dict = {}
        self.fogify_yaml = None
        self.compose_dir: str | None = None  # where the model's relative trace files are
        self._session = requests.Session()
        if docker_compose:
            self.compose_dir = os.path.dirname(os.path.abspath(docker_compose))
            try:
                with open(docker_compose, "r") as handle:
                    self.docker_compose = handle.read()
            except FileNotFoundError:
                raise ExceptionFogifySDK("No such file or directory: " + docker_compose) from None
            self.parse_docker_swarm()
