"""A pytest plugin: with FOGIFY_NET_NO_SKIP=1 a skipped test is a failure, its skip reason the message.

The stock-kernel VM (scripts/vm.sh) sets it: there every test it runs has what it
needs (netem, Docker, the images), so a skip there means the VM, not the test, is
broken, and must not pass unnoticed. tests/conftest.py loads the plugin.
"""

from __future__ import annotations

import os

import pytest

ENV = "FOGIFY_NET_NO_SKIP"


def _active() -> bool:
    return os.environ.get(ENV) == "1"


def _reason(longrepr) -> str:
    # a skip's longrepr is (file, line, "Skipped: <reason>")
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _active() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{ENV}=1 and the test was skipped: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _active() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{ENV}=1 and the module was skipped: {_reason(report.longrepr)}"
