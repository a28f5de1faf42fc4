"""The soak's short form, run by CI: twelve cycles cover each of the CLI, the API and the SDK, each model, and
three SIGKILLs of the API. `scripts/soak.sh --cycles 50` is the long form."""

from __future__ import annotations

import os

import pytest

from . import soak

pytestmark = [pytest.mark.slow, pytest.mark.soak, pytest.mark.usefixtures("machine")]

CYCLES = int(os.environ.get("FOGIFY_SOAK_CYCLES", "12"))


def test_cycles_of_deploy_actions_and_undeploy_leave_nothing_behind(capsys):
    figures = soak.run(CYCLES, report=lambda line: None)
    with capsys.disabled():
        print("\n" + figures.table())
    assert not figures.failures, "\n".join(f"cycle {c.number}: {c.error}" for c in figures.failures)
    assert not [c for c in figures.cycles if c.leftovers], [(c.number, c.leftovers) for c in figures.cycles]
    assert not figures.final_leftovers
