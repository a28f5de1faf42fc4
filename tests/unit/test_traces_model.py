"""Traces and mobility in the model: trace files and their formats, the move and trace actions, routes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fogify_net.model import ModelBuilder, ModelError
from fogify_net.model.actions import Move, TraceAction, parse_action
from fogify_net.model.traces import (
    FLOOR_RATE,
    TraceFiles,
    mahimahi_mean_rate,
    mahimahi_points,
    model_trace_files,
    parse_csv,
    parse_mahimahi,
    parse_trace_spec,
)

REPO = Path(__file__).parents[2]


def spec(raw: dict, files: TraceFiles | None = None):
    return parse_trace_spec(raw, "x-fogify.networks[0].trace", "lan", files)


def builder(trace=None, blueprint_trace=None, link_trace=None) -> ModelBuilder:
    m = ModelBuilder()
    m.service("app", image="img")
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("r1", bidirectional={"bandwidth": "10Mbps"}, **({"trace": trace} if trace else {}))
    m.network("r2", bidirectional={"latency": {"delay": "10ms"}})
    r1 = {"name": "r1", "trace": blueprint_trace} if blueprint_trace else "r1"
    m.blueprint("car", node="n", service="app", networks=[r1], replicas=2)
    m.blueprint("edge", node="n", service="app", networks=["r1", "r2"])
    if link_trace:
        m.link("r1", "car", "edge", trace=link_trace)
    return m


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_cells_take_units_or_bare_mbits_ms_and_percent():
    points = parse_csv("# a comment\ntime_s,bandwidth,delay,jitter,loss\n0,2,20,,0.5\n1.5,10Mbps,80ms,2ms,1%\n"
                       "2,,40,,\n", "t")
    assert [p.time for p in points] == [0, 1.5, 2]
    assert points[0].values.rate == 2_000_000 and points[0].values.delay == pytest.approx(0.02)
    assert points[0].values.jitter is None and points[0].values.loss == pytest.approx(0.5)
    assert points[1].values.rate == 10_000_000 and points[1].values.jitter == pytest.approx(0.002)
    assert points[2].values.rate is None and points[2].values.delay == pytest.approx(0.04)


def test_a_bandwidth_of_zero_is_an_outage_at_the_floor_rate():
    points = parse_csv("time_s,bandwidth\n0,0\n1,0Mbps\n2,1\n", "t")
    assert [p.values.rate for p in points] == [FLOOR_RATE, FLOOR_RATE, 1_000_000]


@pytest.mark.parametrize("text, message", [
    ("time_s,speed\n0,1\n", "unknown column 'speed'"),
    ("bandwidth,delay\n1,2\n", "no time_s column"),
    ("time_s\n0\n", "names no property"),
    ("time_s,delay\n0,10\n1,20\n1,30\n", "time_s must increase"),
    ("time_s,delay\n0,10\n1,10Mbps\n", "line 3.delay"),
    ("time_s,delay\n0,10,4\n", "3 cells for 2 columns"),
    ("time_s,delay\n0,\n", "no point gives a value"),
    ("", "empty"),
])
def test_bad_csv_names_the_line_and_column(text, message):
    with pytest.raises(ModelError, match=message):
        parse_csv(text, "t")


# --- Mahimahi ----------------------------------------------------------------------------------


def test_mahimahi_becomes_a_rate_per_bin_whose_mean_is_the_traces():
    stamps = [1, 1, 2, 5, 10, 30, 30, 55]  # period 55 ms
    points, period = mahimahi_points(stamps, 0.02)
    assert period == pytest.approx(0.055)
    assert [p.time for p in points] == pytest.approx([0, 0.02, 0.04])
    frame = 1514 * 8
    assert [p.values.rate for p in points] == [5 * frame / 0.02, 2 * frame / 0.02, round(1 * frame / 0.015)]
    widths = [0.02, 0.02, 0.015]
    mean = sum(p.values.rate * w for p, w in zip(points, widths)) / period
    assert mean == pytest.approx(mahimahi_mean_rate(stamps) * 1514 / 1500, rel=1e-6)


def test_mahimahi_files_are_read_and_checked():
    assert parse_mahimahi("0\n0\n# x\n7\n", "t") == [0, 0, 7]
    with pytest.raises(ModelError, match="line 2"):
        parse_mahimahi("1\nx\n", "t")
    with pytest.raises(ModelError, match="must not decrease"):
        parse_mahimahi("5\n3\n", "t")
    with pytest.raises(ModelError, match="above 0 ms"):
        parse_mahimahi("0\n0\n", "t")


def test_a_trace_file_is_found_among_the_uploads_then_in_the_models_folder(tmp_path):
    (tmp_path / "cell.down").write_text("1\n2\n3\n10\n")
    from_folder = spec({"file": "cell.down"}, TraceFiles(base_dir=tmp_path))
    assert from_folder.trace.source == "cell.down" and from_folder.trace.duration == pytest.approx(0.01)
    uploaded = spec({"file": "./t/lte.csv"}, TraceFiles(uploaded={"t/lte.csv": b"time_s,delay\n0,5\n"}))
    assert uploaded.trace.points[0].values.delay == pytest.approx(0.005)
    with pytest.raises(ModelError, match="was not uploaded with the model"):
        spec({"file": "lte.csv"}, TraceFiles())
    with pytest.raises(ModelError, match="cannot read trace file 'gone.csv'"):
        spec({"file": "gone.csv"}, TraceFiles(base_dir=tmp_path))


# --- trace options and where traces go ---------------------------------------------------------


def test_trace_options_and_defaults():
    s = spec({"points": [{"time_s": 0, "delay": 20}, {"time_s": 2, "delay": 80}]})
    assert (s.name, s.direction, s.autostart) == ("lan", "bidirectional", True)
    assert (s.trace.mode, s.trace.resolution, s.trace.loop, s.trace.duration) == ("step", 0.1, True, 4.0)
    s = spec({"points": [{"time_s": 0, "delay": 20}], "direction": "uplink", "mode": "linear",
              "resolution": "250ms", "loop": False, "duration": "10s", "start": "action"})
    assert (s.name, s.trace.mode, s.trace.resolution, s.trace.loop, s.trace.duration, s.autostart) == (
        "lan/uplink", "linear", 0.25, False, 10.0, False)


@pytest.mark.parametrize("raw, message", [
    ({"points": [{"time_s": 0, "delay": 1}], "mode": "smooth"}, "mode: unknown mode"),
    ({"points": [{"time_s": 0, "delay": 1}], "resolution": "1ms"}, "resolution: must be between"),
    ({"points": [{"time_s": 0, "delay": 1}], "direction": "both"}, "direction: unknown direction"),
    ({"points": [{"time_s": 0, "delay": 1}], "start": "later"}, "start: unknown start"),
    ({"points": [{"time_s": 0, "delay": 1}, {"time_s": 5, "delay": 2}], "duration": "4s"}, "longer than"),
    ({"mahimahi": [1, 2, 3], "mode": "linear"}, "use mode step"),
    ({"points": [{"time_s": 0, "delay": 1}], "mahimahi": [1]}, "exactly one of"),
    ({"points": [{"t": 0}]}, r"points\[0\].t: unknown field"),
    ({"points": [{"time_s": 1e300, "delay": 1}]}, "beyond a week"),
    ({"points": [{"time_s": 0, "delay": 1}], "duration": "1e9s"}, "at most 604800 s"),
    ({"points": [{"time_s": 0, "delay": 1}, {"time_s": 6000, "delay": 2}], "mode": "linear",
      "resolution": "10ms", "duration": "20000s"}, "more than 1000000 steps a pass"),
    ({"mahimahi": [0, 10 ** 400]}, "beyond a week"),
    ({"mahimahi": [0, 600_000_000], "resolution": "10ms"}, "more than 1000000 bins"),
    ({"mahimahi": [-1, 5]}, r"mahimahi\[0\]: expected a whole number"),
    ({"points": [{"time_s": 0, "bandwidth": 2e9}]}, "invalid bandwidth"),
    ({"points": [{"time_s": 0, "delay": "61s"}]}, "above 60 s"),
])
def test_bad_trace_options_name_their_field(raw, message):  # and nothing big is made before the check
    with pytest.raises(ModelError, match=message):
        spec(raw)


def test_traces_on_a_network_a_blueprint_entry_and_a_links_rule_are_bound_where_written():
    points = {"points": [{"time_s": 0, "delay": 5}]}
    model = builder(trace=points, blueprint_trace={**points, "direction": "downlink"},
                    link_trace={**points, "start": "action"}).build()
    bound = {t.name: t for t in model.traces}
    assert set(bound) == {"r1", "car@r1/downlink", "car-edge@r1"}
    assert bound["r1"].target.network == "r1" and bound["r1"].target.label is None
    assert bound["car@r1/downlink"].target.label == "car"
    assert bound["car-edge@r1"].target.link == ("car", "edge") and not bound["car-edge@r1"].spec.autostart
    with pytest.raises(ModelError, match="traces overlap"):
        builder(trace=[points, {**points, "direction": "uplink"}]).build()
    with pytest.raises(ModelError, match="two traces are named 'x'"):
        builder(trace={**points, "name": "x"}, blueprint_trace={**points, "name": "x"}).build()


def test_clients_find_the_trace_files_a_document_names():
    document = builder(trace="a.csv", blueprint_trace=[{"file": "b.down", "direction": "downlink"}],
                       link_trace={"file": "a.csv"}).document()
    assert model_trace_files(document) == ["a.csv", "b.down"]


def test_the_example_traces_are_made_by_their_script_and_parse(tmp_path):
    """The CSVs in the repository are what make_traces.py makes; the Mahimahi files it makes on
    demand parse, with the mean rates examples/traces/README.md gives (about 30 and 10 Mbit/s)."""
    folder = REPO / "examples" / "traces"
    spec = importlib.util.spec_from_file_location("make_traces", folder / "make_traces.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    made = script.make(tmp_path)
    for path in made:
        if path.suffix == ".csv":
            assert path.read_bytes() == (folder / path.name).read_bytes(), f"{path.name} differs from its script"
        parsed = parse_trace_spec({"file": path.name}, "t", "x", TraceFiles(base_dir=tmp_path))
        assert parsed.trace.duration > 10
        if path.suffix in (".down", ".up"):
            rates = [p.values.rate for p in parsed.trace.points]
            mean = sum(rates) / len(rates) / 1e6
            assert mean == pytest.approx(30 if path.suffix == ".down" else 10, rel=0.05), path.name


# --- actions -----------------------------------------------------------------------------------


def test_move_parameters():
    model = builder().build()
    move = parse_action("move", {"instance_type": "car.1", "to": "r2", "from": "r1", "overlap": "500ms"},
                        model=model)
    assert move == Move(move.target, to="r2", source="r1", overlap=0.5) and str(move.target) == "car.1"
    assert parse_action("move", {"instance_type": "car", "network": "r2"}, model=model).overlap == 0
    for params, message in (({"instance_type": "car"}, "params.network: missing"),
                            ({"instance_type": "car", "to": "r9"}, "unknown network 'r9'"),
                            ({"instance_type": "car", "to": "r2", "from": "r2"}, "from and to are both"),
                            ({"instance_type": "car", "to": "r2", "overlap": "61s"}, "overlap: at most"),
                            ({"instance_type": "bus", "to": "r2"}, "unknown label 'bus'")):
        with pytest.raises(ModelError, match=message):
            parse_action("move", params, model=model)


def test_trace_action_parameters():
    model = builder(trace={"points": [{"time_s": 0, "delay": 5}]}).build()
    assert parse_action("trace", {"command": "pause"}, model=model) == TraceAction("pause")
    assert parse_action("trace", {"command": "stop", "name": "r1"}, model=model) == TraceAction("stop", "r1")
    inline = parse_action("trace", {"network": "r1", "instance_type": "car",
                                    "points": [{"time_s": 0, "bandwidth": "1Mbps"}]}, model=model)
    assert inline.command == "start" and inline.name == "car@r1" and inline.inline.target.label == "car"
    link = parse_action("trace", {"network": "r1", "from_node": "car", "to_node": "edge",
                                  "points": [{"time_s": 0, "loss": 1}]}, model=model)
    assert link.inline.target.link == ("car", "edge")
    for params, message in (({"command": "start"}, "name: missing"),
                            ({"command": "rewind"}, "unknown command"),
                            ({"command": "stop", "name": "zz"}, "unknown trace 'zz'"),
                            ({"network": "r1", "file": "x.csv"}, "cannot name a file"),
                            ({"network": "r1", "command": "pause", "points": [{"time_s": 0, "delay": 1}]},
                             "points come with start"),
                            ({"points": [{"time_s": 0, "delay": 1}]}, "network: missing")):
        with pytest.raises(ModelError, match=message):
            parse_action("trace", params, model=model)


def test_a_links_action_cannot_carry_a_trace():
    model = builder().build()
    with pytest.raises(ModelError, match="cannot carry a trace"):
        parse_action("links", {"network": "r1", "links": [{"from_node": "car", "to_node": "edge",
                                                          "trace": "x.csv"}]}, model=model)


# --- routes ------------------------------------------------------------------------------------


def test_a_route_becomes_moves_merged_into_the_actions_by_time():
    m = builder()
    m.scenario("drive", [{"time": 10, "action": {"type": "noop"}}, {"time": 30, "action": {"type": "noop"}}],
               routes=[{"instance_type": "car", "instances": 1, "overlap": "200ms",
                        "route": [{"at": 0, "network": "r1"}, {"at": "20s", "network": "r2"},
                                  {"at": 40, "network": "r1", "overlap": 0}]}])
    actions = m.build().scenarios["drive"].actions
    assert [(a.position, a.time, a.type) for a in actions] == [
        (0, 10, "noop"), (1, 10, "move"), (2, 20, "noop"), (3, 0, "move")]
    assert actions[1].parameters == {"from": "r1", "to": "r2", "overlap": "200ms"}
    assert actions[1].instance_type == "car" and actions[1].instances == 1
    assert actions[3].parameters == {"from": "r2", "to": "r1", "overlap": 0}


@pytest.mark.parametrize("route, message", [
    ([{"at": 0, "network": "r1"}], "at least two waypoints"),
    ([{"at": 0, "network": "r2"}, {"at": 5, "network": "r1"}], "starts on 'r2'"),
    ([{"at": 5, "network": "r1"}, {"at": 5, "network": "r2"}], "later one after another"),
    ([{"at": 0, "network": "r1"}, {"at": 5, "network": "r1"}], "already on 'r1'"),
    ([{"at": 0, "network": "r1"}, {"network": "r2"}], r"route\[1\].at: missing"),
    ([{"at": 0, "network": "r1"}, {"at": 5, "network": "r9"}], "unknown network 'r9'"),
])
def test_bad_routes_name_their_waypoint(route, message):
    m = builder()
    m.scenario("drive", [], routes=[{"instance_type": "car", "route": route}])
    with pytest.raises(ModelError, match=message):
        m.build()
