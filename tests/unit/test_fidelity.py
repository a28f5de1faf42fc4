"""The fidelity monitor's checks and thresholds, driven with synthetic readings round by round."""

from __future__ import annotations

import re

import pytest

from fogify_net.host.delayline.driver import LATE_EDGES_US
from fogify_net.host.fidelity import DelayQueue, HostCpu, InstanceCpu, LinkQueue, Readings, parse_proc_stat
from fogify_net.monitoring.fidelity import (
    DELAY_DROPS,
    DELAY_LATE,
    HOST_CPU,
    INSTANCE_CPU,
    LINK_RATE,
    SAMPLER,
    SCENARIO,
    FidelityMonitor,
    FiredAction,
    SamplerHealth,
    Thresholds,
    fidelity_value,
    late_quantile,
)

NODE = "box"
BUCKETS = len(LATE_EDGES_US) + 1
MS1 = LATE_EDGES_US.index(1000) + 1  # the first bucket wholly at or above 1 ms


class World:
    """Cumulative counters that a test moves forward one second per round, as a backend would read them."""

    def __init__(self, cores: int = 2):
        self.t = 0.0
        self.cores = [[0, 0] for _ in range(cores)]
        self.stall = 0
        self.psi = True  # False: a kernel without /proc/pressure
        self.runnable = 1
        self.instances: dict[str, list] = {}  # name -> [quota, usage_ns, throttled_ns, stall_us]
        self.groups_gone: dict[str, int] = {}  # name -> child cgroups removed
        self.links: dict[tuple, list] = {}  # (instance, network, direction) -> [rate, bytes, overlimits, drops, qlen]
        self.delays: dict[tuple, list] = {}  # (instance, network, direction) -> [released, dropped, hist]

    def second(self, busy: float = 0.2, wait: float = 0.0) -> None:
        self.t += 1.0
        for core in self.cores:
            core[0] += round(100 * busy)
            core[1] += 100
        self.stall += round(1e6 * wait)

    def run(self, name: str, used: float, waited: float = 0.0, throttled: float = 0.0) -> None:
        row = self.instances.setdefault(name, [1.0, 0, 0, 0])
        row[1] += round(used * 1e9)
        row[2] += round(throttled * 1e9)
        row[3] += round(waited * 1e6)

    def send(self, key: tuple, rate: int, bits: float, waiting: bool, drops: int = 0) -> None:
        row = self.links.setdefault(key, [rate, 0, 0, 0, 0])
        row[1] += round(bits / 8)
        row[2] += 10 if waiting else 0
        row[3] += drops
        row[4] = 5 if waiting else 0

    def delay(self, key: tuple, on_time: int, late_ms: float = 0.0, late: int = 0, dropped: int = 0) -> None:
        row = self.delays.setdefault(key, [0, 0, [0] * BUCKETS])
        row[0] += on_time + late
        row[1] += dropped
        row[2][1] += on_time  # 25-50 us
        if late:
            index = next(i for i, edge in enumerate(LATE_EDGES_US) if late_ms * 1000 < edge)
            row[2][index] += late

    def readings(self) -> Readings:
        readings = Readings()
        readings.hosts[NODE] = HostCpu(NODE, self.t, tuple(map(tuple, self.cores)), self.stall if self.psi else None,
                                     self.runnable)
        for name, (quota, usage, throttled, stall) in self.instances.items():
            readings.instances[name] = InstanceCpu(name, NODE, self.t, quota, usage, 0, 0, throttled, stall,
                                                   self.groups_gone.get(name, 0))
        for (instance, network, direction), (rate, sent, over, drops, qlen) in self.links.items():
            readings.links.append(LinkQueue(instance, network, direction, "", NODE, self.t, rate, sent, 0, drops,
                                            over, qlen, qlen * 1500))
        for (instance, network, direction), (released, dropped, hist) in self.delays.items():
            readings.delays.append(DelayQueue(instance, network, direction, "", NODE, 20001, 20.0, released,
                                              released, dropped, 0, tuple(hist)))
        return readings


def observe(monitor: FidelityMonitor, world: World, **kwargs):
    return monitor.observe(1000.0 + world.t, world.readings(), **kwargs)


def test_nothing_is_judged_before_a_second_reading():
    monitor, world = FidelityMonitor(), World()
    assert observe(monitor, world).state == "unknown"
    world.second()
    assert observe(monitor, world).state == "ok"


def test_a_saturated_host_is_degraded_after_two_rounds_from_the_first_bad_one():
    monitor, world = FidelityMonitor(), World()
    world.run("a.1", 0.1)
    observe(monitor, world)
    world.second(busy=0.97, wait=0.75)
    world.run("a.1", 0.5)
    assert observe(monitor, world).state == "ok"  # one round is not yet a trend
    world.second(busy=0.97, wait=0.75)
    world.run("a.1", 0.5)
    verdict = observe(monitor, world)
    assert verdict.state == "degraded"
    assert verdict.reasons == [
        "host CPU saturated 97% for 2 s (cores 97% 97%, runnable tasks waited for a CPU 75% of the time)"]
    assert verdict.started[0].start == 1000.0  # the start of the first bad round
    assert verdict.started[0].check == HOST_CPU and verdict.instances["a.1"] == verdict.reasons
    assert fidelity_value(verdict, "a.1") == 0.0


def test_a_busy_host_whose_tasks_do_not_wait_is_faithful():
    monitor, world = FidelityMonitor(), World()
    observe(monitor, world)
    for _ in range(4):
        world.second(busy=0.99, wait=0.02)  # one busy loop per core, nobody queued behind it
        assert observe(monitor, world).state == "ok"


def test_without_psi_a_busy_host_is_judged_by_its_run_queue():
    monitor, world = FidelityMonitor(), World()
    world.psi = False
    observe(monitor, world)
    world.runnable = 2  # one busy loop per core
    for _ in range(3):
        world.second(busy=1.0)
        assert observe(monitor, world).state == "ok"
    world.runnable = 5
    world.second(busy=1.0)
    observe(monitor, world)
    world.second(busy=1.0)
    assert observe(monitor, world).reasons == ["host CPU saturated 100% for 2 s (cores 100% 100%, 5 tasks runnable)"]


def test_a_busy_host_whose_tasks_wait_a_little_is_faithful():
    """bench/capacity.py: a VM eating one core and a small deployment on the other kept the machine 90%
    busy with tasks waiting 31% of the time, and every delay and rate held."""
    monitor, world = FidelityMonitor(), World()
    observe(monitor, world)
    for _ in range(4):
        world.second(busy=0.9, wait=0.31)
        assert observe(monitor, world).state == "ok"


def test_an_episode_ends_after_five_clean_rounds():
    monitor, world = FidelityMonitor(), World()
    observe(monitor, world)
    for _ in range(2):
        world.second(busy=1.0, wait=0.5)
        observe(monitor, world)
    for clean in range(1, 6):
        world.second()
        verdict = observe(monitor, world)
        assert verdict.state == ("ok" if clean == 5 else "degraded"), clean
    assert verdict.ended[0].end == 1007.0 and not monitor.open


def test_an_instance_waiting_below_its_quota_is_degraded_at_once():
    monitor, world = FidelityMonitor(), World()
    world.run("a.1", 0.0)
    observe(monitor, world)
    world.second(busy=0.6)
    world.run("a.1", used=0.48, waited=0.52)
    verdict = observe(monitor, world)
    assert verdict.started[0].check == INSTANCE_CPU
    assert verdict.instances == {"a.1": ["a.1 got 0.48 of its 1 CPU for 1 s (it waited for a CPU 52% of the time)"]}


def test_an_instance_that_wants_little_is_not_starved_however_its_wakeups_wait():
    """The full suite with a VM on one core: an app using 0.03 of its 2 CPUs waited 16% of the time."""
    monitor, world = FidelityMonitor(), World()
    world.instances["cloud.1"] = [2.0, 0, 0, 0]
    observe(monitor, world)
    world.second(busy=0.9, wait=0.3)
    world.run("cloud.1", used=0.03, waited=0.16)
    assert observe(monitor, world).state == "ok"


def test_an_instance_throttled_at_its_quota_is_faithful():
    monitor, world = FidelityMonitor(), World()
    world.run("a.1", 0.0)
    observe(monitor, world)
    world.second()
    world.run("a.1", used=0.3, waited=0.6, throttled=0.7)  # quota 1 CPU... of which it used 0.3: waited = throttled
    assert observe(monitor, world).state == "ok"
    world.second()
    world.run("a.1", used=0.95, waited=0.3)  # at its quota: any waiting is its own threads queueing
    assert observe(monitor, world).state == "ok"


def test_a_round_in_which_a_child_group_went_away_is_not_judged():
    """A stress ends: its capped child group goes, and with it what it was throttled since the last
    reading, while the container's PSI has counted that time as waiting."""
    for gone, state in ((0, "degraded"), (1, "ok")):
        monitor, world = FidelityMonitor(), World()
        world.run("a.1", 0.0)
        observe(monitor, world)
        world.second()
        world.run("a.1", used=0.15, waited=0.85)  # throttled 0.85 in the child, unseen
        world.groups_gone["a.1"] = gone
        assert observe(monitor, world).state == state


def test_child_groups_throttling_sums_the_subtree_and_keeps_what_removed_groups_had(tmp_path):
    from fogify_net.host.fidelity import ChildGroupsThrottling

    def group(relative: str, throttled_ns: int) -> None:
        (tmp_path / relative).mkdir(exist_ok=True)
        (tmp_path / relative / "cpu.stat").write_text(f"nr_periods 9\nnr_throttled 3\nthrottled_time {throttled_ns}\n")

    (tmp_path / "cpu.stat").write_text("throttled_time 999\n")  # the container's own: not a child's
    children = ChildGroupsThrottling(tmp_path, v2=False)
    assert (children.read(), children.gone) == (0, 0)
    group("stress", 100)
    group("stress/inner", 20)
    assert (children.read(), children.gone) == (120, 0)
    group("stress", 700)
    assert children.read() == 720
    for relative in ("stress/inner", "stress"):
        (tmp_path / relative / "cpu.stat").unlink()
        (tmp_path / relative).rmdir()
    assert (children.read(), children.gone) == (720, 2)  # the sum never goes back
    children.close()


def test_delay_lateness_over_1_ms_at_p99_is_degraded_and_one_late_packet_is_not():
    monitor, world = FidelityMonitor(), World()
    key = ("car.1", "wan", "uplink")
    world.delay(key, 0)
    observe(monitor, world)
    world.second()
    world.delay(key, 500, late_ms=2.5, late=1)
    assert observe(monitor, world).state == "ok"
    world.second()
    world.delay(key, 500, late_ms=3.2, late=40)
    verdict = observe(monitor, world)
    assert verdict.started[0].check == DELAY_LATE
    assert re.match(r"delay line late by [34]\.\d ms p99", verdict.reasons[0])  # 3-5 ms bucket, interpolated
    assert "ms p99 on wan (car.1 uplink) for 1 s (41 of 1041 packets over 1 ms late)" in verdict.reasons[0]
    assert verdict.links == {("car.1", "wan"): verdict.reasons}


def test_packets_dropped_at_a_delay_queue_are_degraded():
    monitor, world = FidelityMonitor(), World()
    key = ("car.1", "wan", "downlink")
    world.delay(key, 0)
    observe(monitor, world)
    world.second()
    world.delay(key, 900, dropped=120)
    verdict = observe(monitor, world)
    assert [e.check for e in verdict.started] == [DELAY_DROPS]
    assert verdict.reasons[0].startswith("delay line dropped 120 packets on wan (car.1 downlink) for 1 s")


def test_a_link_that_queues_every_round_yet_sends_under_its_rate_is_degraded():
    monitor, world = FidelityMonitor(), World()
    key = ("b.1", "lan", "downlink")
    world.send(key, 100_000_000, 0, False)
    observe(monitor, world)
    for _ in range(3):
        world.second()
        world.send(key, 100_000_000, 61e6, waiting=True)
        verdict = observe(monitor, world)
    assert verdict.started[0].check == LINK_RATE
    assert verdict.started[0].start == 1000.0  # the window's three rounds
    assert verdict.reasons == [
        "lan (b.1 downlink) sent 61% of its 100 Mbit/s for 3 s (with packets waiting every round)"]


def test_a_link_that_sends_little_because_little_is_offered_is_faithful():
    monitor, world = FidelityMonitor(), World()
    key = ("b.1", "lan", "uplink")
    world.send(key, 100_000_000, 0, False)
    observe(monitor, world)
    for waiting in (True, False, True, True, False):  # bursts: packets wait now and then
        world.second()
        world.send(key, 10_000_000, 40e6, waiting)
        assert observe(monitor, world).state == "ok"


def test_a_link_over_its_rate_is_degraded():
    monitor, world = FidelityMonitor(), World()
    key = ("b.1", "lan", "uplink")
    world.send(key, 10_000_000, 0, False)
    observe(monitor, world)
    for _ in range(3):
        world.second()
        world.send(key, 10_000_000, 13e6, False)
        verdict = observe(monitor, world)
    assert verdict.reasons == ["lan (b.1 uplink) sent 130% of its 10 Mbit/s for 3 s"]


def test_sampler_skips_and_late_rounds_are_degraded():
    monitor, world = FidelityMonitor(), World()
    world.run("a.1", 0)
    observe(monitor, world, sampler=SamplerHealth(1.0, 0, 0.0))
    world.second()
    verdict = observe(monitor, world, sampler=SamplerHealth(1.0, 2, 0.0))
    assert verdict.reasons == ["sampler skipped 2 rounds for 1 s (a round took longer than its interval)"]
    assert verdict.instances == {"a.1": verdict.reasons}
    monitor, world = FidelityMonitor(), World()
    observe(monitor, world, sampler=SamplerHealth(1.0, 0, 0.0))
    world.second()
    assert observe(monitor, world, sampler=SamplerHealth(1.0, 0, 0.7)).started[0].check == SAMPLER


def test_a_late_scenario_action_is_degraded_once():
    monitor, world = FidelityMonitor(), World()
    world.run("edge.1", 0)
    world.run("cloud.1", 0)
    late = FiredAction("s1", 2, "network", "edge", 1000.5, 250.0)
    on_time = FiredAction("s1", 1, "stress", "cloud", 1000.2, 3.0)
    observe(monitor, world)
    world.second()
    verdict = observe(monitor, world, actions=[on_time, late])
    assert [e.check for e in verdict.started] == [SCENARIO]
    assert verdict.reasons == ["scenario s1 action 2 (network) fired 250 ms late for 1 s"]
    assert list(verdict.instances) == ["edge.1"]
    world.second()
    assert not observe(monitor, world, actions=[on_time, late]).started


def test_actions_of_an_earlier_deployment_are_not_judged():
    monitor, world = FidelityMonitor(), World()
    late = FiredAction("s1", 1, "network", "edge", 10.0, 900.0)
    monitor.seen([late])
    observe(monitor, world, actions=[late])
    world.second()
    assert observe(monitor, world, actions=[late]).state == "ok"


def test_counters_that_went_back_start_over_without_a_finding():
    monitor, world = FidelityMonitor(), World()
    world.run("a.1", 5.0)
    observe(monitor, world)
    world.second()
    world.instances["a.1"] = [1.0, 0, 0, 10**6]  # restarted: a new cgroup counts from 0
    assert observe(monitor, world).state == "ok"


def test_thresholds_are_settable():
    monitor, world = FidelityMonitor(Thresholds(host_rounds=1)), World()
    observe(monitor, world)
    world.second(busy=1.0, wait=0.5)
    assert observe(monitor, world).state == "degraded"


def test_late_quantile_interpolates_within_a_bucket():
    hist = [0] * BUCKETS
    hist[1] = 99  # 25-50 us
    hist[MS1] = 1  # 1-1.5 ms
    assert late_quantile(hist, 0.99) == pytest.approx(50.0)
    hist[MS1] = 10
    assert 1000 < late_quantile(hist, 0.99) < 1500


def test_proc_stat_counts_steal_as_busy_and_reads_the_run_queue():
    text = (b"cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 1 4 30 10 0 0 50 0 0\ncpu1 5 0 5 90 0 0 0 0 0 0\n"
            b"intr 1\nprocs_running 3\n")
    assert parse_proc_stat(text) == (((60, 100), (10, 100)), 3)


def test_the_status_table_shows_the_verdict_its_reasons_and_the_marks():
    from fogify_net.render import status_table

    attachment = {"ip": "10.0.0.2", "uplink": "10Mbit/s", "downlink": "-"}
    report = {"status": "running", "message": "", "shaping": {"mechanism": "userspace"}, "fidelity": "degraded",
              "fidelity_reasons": ["delay line late by 3.2 ms p99 on lan (a.1 uplink) for 4 s"],
              "instances": [{"name": "a.1", "node": "n", "cpus": 1, "memory": 2**27, "fidelity": "degraded",
                             "networks": {"lan": {**attachment, "fidelity": "degraded"}}},
                            {"name": "b.1", "node": "n", "cpus": 1, "memory": 2**27, "fidelity": "ok",
                             "networks": {"lan": {**attachment, "fidelity": "ok"}}}]}
    lines = status_table(report).splitlines()
    assert "fidelity: degraded (see GET /fidelity/ for the episodes)" in lines
    assert "  - delay line late by 3.2 ms p99 on lan (a.1 uplink) for 4 s" in lines
    assert lines[-2].split()[0] == "a.1" and lines[-2].endswith("degraded (link degraded)")
    assert lines[-1].split()[0] == "b.1" and lines[-1].endswith(" ok")
