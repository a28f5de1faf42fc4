"""The delay-line supervisor backs off when the helper cannot start; the NFQUEUE rules fail open."""

from __future__ import annotations

import time

from fogify_net.compile.shaping import DirectionShaping, InterfaceShaping
from fogify_net.host.delayline.driver import DelayLine
from fogify_net.host.delayqueues import DelayQueues
from fogify_net.model.schema import QoS


def test_a_helper_that_cannot_restart_is_retried_with_backoff(tmp_path):
    helper = tmp_path / "helper"
    helper.write_text("#!/bin/sh\nread line\necho pong\nexit 3\n")  # answers the first ping, then dies
    helper.chmod(0o755)
    states = []
    line = DelayLine(run_dir=tmp_path, binary=str(helper), on_state=lambda state, detail: states.append(state))
    spawns = []
    spawn = line._spawn

    def counted():
        spawns.append(time.monotonic())
        spawn()

    line._spawn = counted
    line.start()
    line.binary = str(tmp_path / "gone")  # every restart fails to start a process
    try:
        time.sleep(4.0)  # past the first second, when the old code forgot the failures and spun
        assert 1 <= len(spawns) <= 6, f"{len(spawns)} restarts in 4 s"
        assert "degraded" in states
    finally:
        line.stop()


class Line:
    def __init__(self):
        self.queues = {}

    def set_queue(self, queue, *args):
        self.queues[queue] = args

    def del_queue(self, queue):
        self.queues.pop(queue)


def test_delay_rules_let_packets_through_while_no_helper_listens():
    rules = []
    queues = DelayQueues(Line(), rules.append, first_queue=20000)
    delayed = DirectionShaping(QoS(delay=0.05))
    queues.apply({"fgnh1e0": InterfaceShaping("a.1", "lan", "eth0", "fgnh1e0", delayed, DirectionShaping(QoS()))})
    assert "-j NFQUEUE --queue-num 20000 --queue-bypass" in rules[-1]
