"""Helpers for the taxi example's tests: run app roles as local processes on loopback ports.

A module with its own name (not conftest) so that test files can import it even
when the repository's other conftest.py files are loaded in the same session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

EXAMPLE = Path(__file__).resolve().parents[1]
MAIN = EXAMPLE / "app" / "main.py"
GENERATOR = EXAMPLE / "generate_trips.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll until predicate() is truthy and return it; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Role:
    """One app process (car, edge or cloud) on 127.0.0.1, with its own metrics file and log."""

    def __init__(self, workdir: Path, name: str, node_type: str, port: int, env: dict[str, str]):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.metrics_file = workdir / f"{name}.metrics"
        self.log_file = workdir / f"{name}.log"
        full_env = {
            **os.environ,
            "PYTHONDONTWRITEBYTECODE": "1",  # keep app/ free of __pycache__
            "NODE_TYPE": node_type,
            "LISTEN_HOST": "127.0.0.1",
            "PORT": str(port),
            "FOGIFY_METRICS_FILE": str(self.metrics_file),
            "FOGIFY_INSTANCE": name,
            **env,
        }
        with open(self.log_file, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(MAIN)], env=full_env, stdout=log, stderr=subprocess.STDOUT
            )

    def stats(self) -> dict | None:
        try:
            return requests.get(self.url + "stats", timeout=1).json()
        except requests.RequestException:
            return None

    def metrics(self) -> dict | None:
        """The metrics file, parsed; it must always be whole JSON of numbers when present."""
        try:
            text = self.metrics_file.read_text()
        except FileNotFoundError:
            return None
        data = json.loads(text)
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()), data
        return data

    def wait_healthy(self, timeout: float = 10) -> None:
        def healthy():
            assert self.process.poll() is None, f"{self.name} exited:\n{self.log_file.read_text()}"
            try:
                return requests.get(self.url + "health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, f"{self.name} to answer /health")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
