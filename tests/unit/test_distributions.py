"""Custom delay distributions: a ping trace becomes netem's table, models and actions may name it."""

from __future__ import annotations

import random
import statistics

import pytest

from fogify_net.compile.tc import distribution_file, leaf_spec
from fogify_net.host.delayline.driver import QueueConfig, validate
from fogify_net.host.delayqueues import custom_table
from fogify_net.host.distributions import DistributionStore, tc_lib_dir
from fogify_net.model import ModelBuilder, ModelError, QoS
from fogify_net.model.actions import parse_action
from fogify_net.model.distributions import (
    check_name,
    from_json,
    known_distributions,
    make_distribution,
    parse_trace,
    summary,
    to_json,
)

PING = """PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.
64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=21.4 ms
[1700000000.123456] 64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=19.0 ms
64 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=30 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2003ms
rtt min/avg/max/mdev = 19.000/23.466/30.000/4.723 ms
"""


def trace(n: int = 5000, seed: int = 7) -> list[float]:
    """A two-humped delay trace (ms): most replies near 20 ms, a third near 45 ms."""
    rng = random.Random(seed)
    return [rng.gauss(20, 2) if rng.random() < 0.7 else rng.gauss(45, 4) for _ in range(n)]


def test_the_replies_of_a_ping_output_or_plain_numbers_are_the_trace():
    assert parse_trace(PING) == [21.4, 19.0, 30.0]
    assert parse_trace("12.5\n13\n\n14.25\n") == [12.5, 13.0, 14.25]
    with pytest.raises(ModelError) as caught:
        parse_trace("PING x\nRequest timeout for icmp_seq 0\n")
    assert caught.value.path == "file" and "fewer than 2 delays" in caught.value.problem


def test_the_statistics_are_netems_stats_and_the_table_its_normalised_inverse_cdf():
    values = trace()
    d = make_distribution("bimodal", values)
    assert d.mean_ms == pytest.approx(statistics.fmean(values))
    assert d.std_ms == pytest.approx(statistics.stdev(values))
    assert abs(d.rho) < 0.05  # independent draws
    assert summary(d) == {"mu": f"{d.mean_ms:.6f}", "sigma": f"{d.std_ms:.6f}", "rho": f"{d.rho:.6f}",
                          "samples": 5000}
    assert len(d.table) == 4096 and list(d.table) == sorted(d.table)
    assert statistics.fmean(d.table) / 8192 == pytest.approx(0, abs=0.01)
    assert statistics.pstdev(d.table) / 8192 == pytest.approx(1, abs=0.01)
    # the table's quantiles are the trace's: its median, mapped back to ms
    assert d.mean_ms + d.std_ms * d.table[2048] / 8192 == pytest.approx(statistics.median(values), abs=0.1)
    assert from_json(to_json(d)) == d
    with pytest.raises(ModelError, match="a distribution needs some spread"):
        make_distribution("flat", [5.0, 5.0, 5.0])


def test_a_normal_trace_gives_the_table_tc_ships_for_the_normal_distribution():
    shipped = tc_lib_dir() / "normal.dist"
    if not shipped.exists():
        pytest.skip(f"no {shipped} (iproute2's tables) on this machine")
    reference = [int(v) for line in shipped.read_text().splitlines() if not line.startswith("#")
                 for v in line.split()]
    rng = random.Random(1)
    ours = make_distribution("n", [rng.gauss(50, 5) for _ in range(200_000)]).table
    assert len(ours) == len(reference) == 4096
    # the same quantiles within 0.03 standard deviations, except the last 1% of each tail (few samples there)
    worst = max(abs(a - b) for a, b in list(zip(ours, reference))[41:-41])
    assert worst <= 0.03 * 8192, worst


def test_the_table_file_is_in_tcs_format():
    d = make_distribution("bimodal", trace())
    text = distribution_file(d)
    lines = text.splitlines()
    assert lines[0].startswith("# fogify-net delay distribution 'bimodal': 5000 samples")
    assert all(len(line.split()) == 8 for line in lines[1:]) and len(lines) == 1 + 4096 // 8
    assert tuple(int(v) for line in lines[1:] for v in line.split()) == d.table


def test_netem_names_our_table_by_its_file_and_builtins_by_theirs():
    assert "distribution fogify-net-bimodal " in leaf_spec(QoS(delay=0.03, jitter=0.01, distribution="bimodal"),
                                                            kernel_delay=True)
    assert "distribution pareto " in leaf_spec(QoS(delay=0.03, jitter=0.01, distribution="pareto"), True)


@pytest.mark.parametrize("name, problem", [
    ("normal", "built-in"), ("gaussian", "built-in"), ("my trace", "invalid distribution name"),
    ("x" * 33, "invalid distribution name"), ("a.b", "invalid distribution name"),
])
def test_a_distributions_name_is_checked(name, problem):
    with pytest.raises(ModelError, match=problem) as caught:
        check_name(name)
    assert caught.value.path == "name"


def pair(latency: dict, distributions=None):
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest")
    m.node("box", cores=1, clock_speed=1000, memory="128M")
    m.network("net", uplink={"latency": latency}, downlink={})
    m.blueprint("a", node="box", service="app", networks=["net"], replicas=2)
    return m.build(distributions=distributions)


def test_a_latency_may_name_a_known_distribution_and_gets_its_mean_and_deviation():
    d = make_distribution("bimodal", trace())
    model = pair({"distribution": "bimodal"}, {"bimodal": d})
    uplink = model.networks["net"].uplink
    assert (uplink.distribution, uplink.delay, uplink.jitter) == ("bimodal", d.mean_ms / 1000, d.std_ms / 1000)
    assert model.distributions == {"bimodal": d}
    scaled = pair({"distribution": "bimodal", "delay": "100ms"}, {"bimodal": d}).networks["net"].uplink
    assert (scaled.delay, scaled.jitter) == (0.1, d.std_ms / 1000)
    assert pair({"delay": "10ms", "deviation": "2ms", "distribution": "gaussian"}).networks["net"].uplink.distribution \
        == "normal"


def test_an_unknown_distribution_is_an_error_naming_the_field_and_the_known_ones():
    with pytest.raises(ModelError) as caught:
        pair({"distribution": "bimodal"}, {"other": make_distribution("other", trace())})
    assert caught.value.path == "x-fogify.networks[0].uplink.latency.distribution"
    assert "unknown distribution 'bimodal'" in caught.value.problem and "POST /generate-network-distribution/" \
        "<name>/: other" in caught.value.problem


def test_actions_accept_the_distributions_known_where_they_are_parsed():
    params = {"instance_type": "a", "network": "net", "uplink": {"latency": {"distribution": "bimodal"}}}
    with pytest.raises(ModelError, match="unknown distribution 'bimodal'"):
        parse_action("network", params)
    d = make_distribution("bimodal", trace())
    with known_distributions({"bimodal": d}):
        change = parse_action("network", params)
    assert change.uplink.distribution == "bimodal" and change.uplink.delay == d.mean_ms / 1000


def test_the_delay_line_gets_a_custom_table_before_the_queue_samples_it():
    d = make_distribution("bimodal", trace())
    config = QueueConfig(27.5, 11.8, 0, "bimodal", custom_table("bimodal", {"bimodal": d}))
    table_line, set_line = config.commands(20001)
    assert table_line == "table 20001 " + " ".join(map(str, d.table))
    assert set_line == "set 20001 27500 11800 0 table"
    assert QueueConfig(5, 1, 0, "normal").commands(7) == ["set 7 5000 1000 0 normal"]
    assert custom_table("pareto", None) is None
    with pytest.raises(LookupError, match="'bimodal'"):
        custom_table("bimodal", {})
    with pytest.raises(ValueError, match="distribution must be one of"):
        validate(1, QueueConfig(5, 1, 0, "bimodal"))
    with pytest.raises(ValueError, match="1 to 4096 values"):
        validate(1, QueueConfig(5, 1, 0, "bimodal", (40000,)))


def test_the_store_keeps_distributions_by_name_and_skips_a_broken_file(tmp_path):
    store = DistributionStore(tmp_path)
    assert store.all() == {}
    d = make_distribution("bimodal", trace())
    store.save(d)
    (tmp_path / "distributions" / "broken.json").write_text("{")
    assert store.all() == {"bimodal": d}


def test_swarm_agents_get_the_tables_their_tasks_shaping_names():
    from ipaddress import IPv4Network

    from fogify_net.backends.swarm.wire import (
        AttachmentShaping,
        TaskShaping,
        custom_names,
        distributions_from_json,
        distributions_to_json,
    )
    from fogify_net.compile.shaping import DirectionShaping

    d = make_distribution("bimodal", trace())
    up = DirectionShaping(QoS(delay=0.03, jitter=0.01, distribution="bimodal"))
    down = DirectionShaping(QoS(delay=0.01, jitter=0.001, distribution="normal"))
    attachment = AttachmentShaping("net", "0123456789ab", IPv4Network("10.0.0.0/24"), up, down)
    task = TaskShaping("c0ffee" * 4, "a.1", (attachment,))
    assert custom_names([TaskShaping.from_json(task.to_json())]) == {"bimodal"}
    assert distributions_from_json(distributions_to_json({"bimodal": d})) == {"bimodal": d}
    assert distributions_from_json(None) == {}
    for bad in ([1], {"bimodal": [1]}, {"bad name;": to_json(d)}, {"x": {**to_json(d), "table": [40000]}}):
        with pytest.raises(ValueError):  # the agent's 400
            distributions_from_json(bad)


@pytest.fixture(scope="module")
def delayd():
    """The helper built from this checkout (make is a no-op when it is current)."""
    import subprocess

    from fogify_net.host.delayline.driver import BUILT_BINARY

    subprocess.run(["make", "-s", "-C", str(BUILT_BINARY.parent)], check=True, capture_output=True)
    return BUILT_BINARY


def converse(binary, lines: list[str]) -> list[str]:
    import subprocess

    done = subprocess.run([str(binary)], input="".join(f"{line}\n" for line in lines), capture_output=True,
                          text=True, timeout=30)
    return done.stdout.splitlines()


NEEDS_TABLE = "err distribution table needs the queue's table first (table <queue> <values>)"
TABLE_USAGE = "err usage: table <queue> <v1> ... <vn> (1 <= n <= 4096, each -32768..32767)"
BAD_TABLES = [
    "table 70001 1", "table 65536 1", "table -1 5", "table 4294967297 5",  # no such queue
    "table 7 1 x", "table 7 40000", "table 7 -32769", "table 7 +5", "table 7 - 5", "table 7 --5", "table 7 5x",
    "table 7 99999999999999999999999", "table 7 -99999999999999999999999", "table 7",
    "table 7 " + " ".join(["1"] * 4097),
]


def test_the_delay_helper_takes_a_table_per_queue_and_refuses_bad_ones(delayd):
    """Commands that bind no queue: `table` keeps a table (4096 values on one line fit the helper's
    line buffer), `set ... table` wants one first; numbers are parsed as strictly as `set`'s."""
    full = "table 8 " + " ".join(["-32768", "32767"] * 2048)
    replies = converse(delayd, [*BAD_TABLES, "table 7 -8192 0 8192", full, "set 9 1000 500 0 table", "ping"])
    assert replies == [TABLE_USAGE] * len(BAD_TABLES) + ["ok", "ok", NEEDS_TABLE, "pong"]


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="binding a queue needs CAP_NET_ADMIN")
def test_a_queues_table_goes_with_the_queue(delayd):
    replies = converse(delayd, ["table 65532 -8192 8192", "set 65532 1000 500 0 table", "del 65532",
                                "set 65532 1000 500 0 table"])
    assert replies == ["ok", "ok", "ok", NEEDS_TABLE]
