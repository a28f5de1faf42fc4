"""Hostile model text: alias bombs, deep nesting and huge values are refused quickly, with short messages."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fogify_net.model import ModelError, parse_model_text
from fogify_net.model.errors import shown
from fogify_net.model.loader import MAX_NODES, load_yaml
from fogify_net.model.units import parse_rate

SEED = Path(__file__).parents[1] / "fixtures" / "seed-taxi.yaml"


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A ~2 KB billion-laughs document: level k is `width` aliases of level k-1, placed in an
    environment value (the issue's: 14 s, 1.4 GB and a 722 MB error message at 9 levels)."""
    lines = ["x-lol:", '  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        lines.append(f"  l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]")
    bomb = "\n".join(lines) + "\n"
    return bomb + SEED.read_text().replace("      NODE_TYPE: CLOUD_NODE\n",
                                           f"      NODE_TYPE: CLOUD_NODE\n      BOMB: *l{levels - 1}\n", 1)


def test_an_alias_bomb_is_refused_at_once_with_a_short_message():
    text = alias_bomb()
    assert len(text) < 12_000
    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        parse_model_text(text)
    elapsed = time.perf_counter() - started
    assert "alias" in str(caught.value) and f"{MAX_NODES:,}" in str(caught.value)
    assert len(str(caught.value)) < 300
    assert elapsed < 1.0, f"{elapsed:.2f}s"


def test_an_alias_bomb_costs_little_memory():
    """In a fresh interpreter, so the peak is the parse's own (the issue measured 1.4 GB)."""
    code = (
        "import resource, sys\n"
        "from fogify_net.model import ModelError, parse_model_text\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    parse_model_text(sys.stdin.read())\nexcept ModelError:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)\n"
    )
    grown_kib = int(subprocess.run([sys.executable, "-c", code], input=alias_bomb(), capture_output=True,
                                   text=True, check=True).stdout)
    assert grown_kib < 50 * 1024, f"{grown_kib} KiB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # (the parent is not measured)


def test_shared_aliases_within_the_bound_still_load():
    text = "base: &b {a: 1, b: 2}\nitems: [*b, *b, *b]\n"
    assert load_yaml(text)["items"][2] == {"a": 1, "b": 2}


def test_a_merge_key_chain_counts_as_expanded():
    lines = ["a0: &a0 {x: 1, y: 2, z: 3}"]
    for k in range(1, 12):
        lines.append(f"a{k}: &a{k} {{<<: [{', '.join([f'*a{k - 1}'] * 8)}], k{k}: 1}}")
    with pytest.raises(ModelError, match="alias bomb"):
        load_yaml("\n".join(lines))


def test_a_recursive_alias_is_refused():
    with pytest.raises(ModelError):
        load_yaml("a: &a [1, *a]\n")


@pytest.mark.parametrize("text", ["[" * 100_000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 400)),
                                  "{" * 5000 + "}" * 5000])
def test_deep_nesting_is_a_model_error_not_a_recursion_error(text):
    with pytest.raises(ModelError):
        load_yaml(text)


def test_many_plain_nodes_are_refused_too():
    with pytest.raises(ModelError, match="more than"):
        load_yaml("[" + "1," * (MAX_NODES + 10) + "1]")


def test_messages_cut_long_values():
    huge = "x" * 1_000_000
    with pytest.raises(ModelError) as caught:
        parse_rate(huge, "f")
    assert len(str(caught.value)) < 300
    assert len(shown(list(range(10**6)))) < 100


def test_environment_values_and_cap_add_must_be_scalars():
    text = SEED.read_text().replace(": CLOUD_NODE\n", ": CLOUD_NODE\n      A: [1, 2]\n", 1)
    with pytest.raises(ModelError, match=r"environment\.A: expected text"):
        parse_model_text(text)
    text = SEED.read_text().replace("    image:", "    cap_add: [[NET_ADMIN]]\n    image:", 1)
    with pytest.raises(ModelError, match=r"cap_add\[0\]: expected text"):
        parse_model_text(text)


def test_the_seed_still_parses():
    assert parse_model_text(SEED.read_text()).blueprints


def test_json_of_the_bomb_is_tiny():  # the fixture is what the API's fuzz test may reuse
    assert len(json.dumps(alias_bomb())) < 20_000


def test_a_model_of_too_many_instances_is_refused():
    from fogify_net.model.limits import MAX_INSTANCES

    text = SEED.read_text().replace("replicas: 2", f"replicas: {MAX_INSTANCES}", 1)
    assert text != SEED.read_text()
    with pytest.raises(ModelError, match=rf"x-fogify\.topology: \d+ instances; .* at most {MAX_INSTANCES}"):
        parse_model_text(text)


def test_scale_out_counts_and_command_timeouts_are_bounded():
    from fogify_net.model.actions import parse_action
    from fogify_net.model.limits import MAX_COMMAND_TIMEOUT_S, MAX_INSTANCES

    with pytest.raises(ModelError, match="params.instances: at most"):
        parse_action("horizontal_scaling", {"instance_type": "a", "type": "up", "instances": MAX_INSTANCES + 1})
    with pytest.raises(ModelError, match=r"params\.action\.timeout: at most"):
        parse_action("command", {"instance_type": "a", "action": {"command": "sleep 1", "wait": True,
                                                                  "timeout": MAX_COMMAND_TIMEOUT_S + 1}})
    ok = parse_action("command", {"instance_type": "a", "action": {"command": "true", "timeout": 30}})
    assert ok.timeout == 30
