"""The delay line helper's stats line, read by the driver: old and new fields, and one table of lateness edges."""

from __future__ import annotations

import re
from pathlib import Path

from fogify_net.host.delayline.driver import LATE_EDGES_US, parse_stats_line

DELAYD_C = Path(__file__).parents[2] / "fogify_net" / "host" / "delayline" / "delayd.c"


def test_the_lateness_edges_are_the_helpers():
    source = DELAYD_C.read_text()
    table = re.search(r"late_edges_us\[\] = \{([^}]*)\}", source).group(1)
    assert tuple(int(edge) for edge in table.replace("\n", " ").split(",")) == LATE_EDGES_US


def test_a_stats_line_with_the_histogram():
    buckets = ",".join(str(n) for n in range(len(LATE_EDGES_US) + 1))
    stats = parse_stats_line(f"q 20001 pkts=120 held=3 maxheld=9 dropped=2 late_avg_us=41.5 late_max_us=1200.0 "
                             f"overbudget=4 stamped=117 released=117 late_hist={buckets}")
    assert (stats.queue, stats.pkts, stats.held, stats.maxheld, stats.dropped) == (20001, 120, 3, 9, 2)
    assert (stats.overbudget, stats.stamped, stats.released) == (4, 117, 117)
    assert stats.late_hist == tuple(range(len(LATE_EDGES_US) + 1))


def test_a_stats_line_of_an_older_helper_has_no_histogram():
    stats = parse_stats_line("q 7 pkts=5 held=0 maxheld=1 dropped=0 late_avg_us=10.0 late_max_us=20.0")
    assert stats.late_hist == () and stats.released == 0 and stats.overbudget == 0


class Line:
    """A helper that has bound the queues it was given and answers stats with `line`'s counters."""

    def __init__(self, line: str):
        self.line = line
        self.queues = {}

    def set_queue(self, queue, *args):
        self.queues[queue] = args

    def del_queue(self, queue):
        self.queues.pop(queue)

    def stats(self):
        return {queue: parse_stats_line(self.line.replace("QUEUE", str(queue))) for queue in self.queues}


def test_the_fidelity_reading_counts_the_kernels_drops_and_the_helpers_overbudget_ones():
    from fogify_net.compile.shaping import DirectionShaping, InterfaceShaping
    from fogify_net.host.delayqueues import DelayQueues
    from fogify_net.model.schema import QoS

    line = Line("q QUEUE pkts=50 held=0 maxheld=9 dropped=2 overbudget=5 late_avg_us=1.0 late_max_us=2.0")
    queues = DelayQueues(line, lambda rules: None, first_queue=20000)
    shaping = {"fgnh1e0": InterfaceShaping("a.1", "lan", "eth0", "fgnh1e0", DirectionShaping(QoS(delay=0.05)),
                                           DirectionShaping(QoS()))}
    queues.apply(shaping)
    (reading,) = queues.readings(shaping, "box")
    assert (reading.instance, reading.network, reading.delay_ms) == ("a.1", "lan", 50.0)
    assert reading.dropped == 7
