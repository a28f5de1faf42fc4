"""FOGIFY_NET_NO_SKIP=1 (set in the stock-kernel VM) turns every kind of skip into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]

SKIPPING = """
import pytest

@pytest.fixture
def netem():
    pytest.skip("this kernel has no sch_netem")

def test_in_a_fixture(netem):
    pass

def test_in_the_body():
    pytest.skip("no Docker")

@pytest.mark.skipif(True, reason="a marker")
def test_by_a_marker():
    pass

@pytest.mark.xfail(reason="expected to fail")
def test_an_expected_failure():
    assert False

def test_that_passes():
    pass
"""

MODULE_SKIP = """
import pytest
pytest.skip("not on this machine", allow_module_level=True)
"""


def run(tmp_path: Path, source: str, no_skip: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_sample.py"
    test.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FOGIFY_NET_NO_SKIP", None)
    if no_skip:
        env["FOGIFY_NET_NO_SKIP"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p",
                           "tests.no_skip", str(test)], capture_output=True, text=True, cwd=tmp_path, env=env)


def test_without_the_variable_skips_stay_skips(tmp_path):
    result = run(tmp_path, SKIPPING, no_skip=False)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped, 1 xfailed" in result.stdout


def test_with_it_each_skip_fails_with_its_reason_and_xfail_is_left_alone(tmp_path):
    result = run(tmp_path, SKIPPING, no_skip=True)
    assert result.returncode == 1, result.stdout
    # skips in setup (a fixture, a marker) become errors, one in the body a failure
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in result.stdout, result.stdout
    for reason in ("this kernel has no sch_netem", "no Docker", "a marker"):
        assert f"FOGIFY_NET_NO_SKIP=1 and the test was skipped: Skipped: {reason}" in result.stdout, reason


def test_with_it_a_skipped_module_fails(tmp_path):
    assert run(tmp_path, MODULE_SKIP, no_skip=False).returncode == 5  # nothing ran: not an error
    result = run(tmp_path, MODULE_SKIP, no_skip=True)
    assert result.returncode == 2, result.stdout  # an error during collection
    assert "the module was skipped" in result.stdout and "not on this machine" in result.stdout, result.stdout
