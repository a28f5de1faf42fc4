"""Running Fogify's own SDK, as published on PyPI, against a fogify-net API in its own process.

The published package is imported as `FogifySDK` like ours, so it lives in a
venv of its own (scripts/install.sh makes it); a test writes a user's script
to a file and runs it there. The API is a real `fogify-net api` process, so
that a test can stop it as a user's shell does (SIGTERM) or kill it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

VERSION = "0.0.3"
VENV = Path(os.environ.get("FOGIFY_PUBLISHED_SDK_VENV", f"/opt/fogify-net/fogifysdk-{VERSION}"))
PYTHON = VENV / "bin" / "python"
TEST_RUN_DIR = "/run/fogify-net-test"


def require_published_sdk() -> None:
    """Fail (not skip) when the published SDK is missing: install.sh makes it, CI must run these tests."""
    assert PYTHON.exists(), f"Fogify's published SDK is missing: {VENV} (run scripts/install.sh)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiProcess:
    """`fogify-net api` on a free loopback port, in a process of its own, with its log in `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()):
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"api-{self.port}.log"
        self.extra = extra
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> ApiProcess:
        env = {**os.environ, "FOGIFY_RUN_DIR": TEST_RUN_DIR}
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fogify_net.cli", "api", "--port", str(self.port),
                 "--data-dir", str(self.workdir / "data"), "--interval", "0.5", "--host-mhz", "2000", *self.extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the API exited with {self.process.returncode}: {self.log()}")
            try:
                requests.get(f"{self.url}/status/", timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"the API did not answer within {timeout:g}s: {self.log()}")

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text()[-tail:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        """Send `sig` and wait for the process to end; returns its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the API did not exit within {timeout:g}s of signal {sig}: {self.log()}") from None


def run_script(source: str, cwd: Path, timeout: float = 300, **variables) -> dict:
    """Run a user's script with the published SDK in `cwd`; it prints one JSON object last.

    `variables` are given to the script as globals (JSON-encoded), e.g. URL.
    """
    prelude = "".join(f"{name} = json.loads({json.dumps(json.dumps(value))})\n" for name, value in variables.items())
    path = cwd / "user_script.py"
    path.write_text("import json\n" + prelude + textwrap.dedent(source))
    result = subprocess.run([str(PYTHON), str(path)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONPATH": "", "MPLBACKEND": "Agg"})
    assert result.returncode == 0, f"the script failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the script printed no JSON:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    answer = json.loads(lines[-1])
    answer["_stderr"] = result.stderr
    return answer
