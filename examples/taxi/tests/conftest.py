"""Fixtures of the taxi example's tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from taxi_helpers import GENERATOR, Role, free_port


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs Docker and the built taxi-exp image")


@pytest.fixture
def start_role(tmp_path):
    """start_role(name, NODE_TYPE, **env) -> Role; every role is stopped after the test.

    The roles' logs are printed at teardown; pytest shows them only when the test failed.
    """
    roles: list[Role] = []

    def start(name: str, node_type: str, port: int | None = None, **env: str) -> Role:
        role = Role(tmp_path, name, node_type, port or free_port(), {k: str(v) for k, v in env.items()})
        roles.append(role)
        return role

    yield start
    for role in roles:
        role.stop()
    for role in roles:
        print(f"----- {role.name} log -----\n{role.log_file.read_text()}")


@pytest.fixture(scope="session")
def trips_file(tmp_path_factory) -> Path:
    """A small generated trip file, made by the same generator the image uses."""
    path = tmp_path_factory.mktemp("trips") / "trips.csv"
    subprocess.run([sys.executable, str(GENERATOR), "--rows", "500", "--out", str(path)], check=True)
    return path
