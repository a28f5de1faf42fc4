"""A Backend that keeps everything in memory, for unit tests of the controller, the API and the actions.

It does what the contract says to the plan and records what it was asked;
`fail_reshape` makes the next reshape fail, `fail_move` the next moves (before
they change anything, as the contract asks of a failed move), `hold` makes
reshape wait on an event (to catch two actions overlapping). Registered by
tests as "fake".
"""

from __future__ import annotations

import threading

from fogify_net.backends.base import Backend, Samples, TaskFacts
from fogify_net.compile.plan import add_instances, attach, detach, remove_instances


class FakeBackend(Backend):
    name = "fake"
    mechanism = "netem"

    def __init__(self, plan, on_state=None, **_options):
        super().__init__(plan, on_state)
        self.running: list[str] = []
        self.calls: list[str] = []
        self.fail_reshape = 0  # reshapes still to fail
        self.fail_move = 0  # moves still to fail
        self.moves: list[tuple[list[str], str, str, float]] = []  # (instances, from, to, overlap) that succeeded
        self.hold: threading.Event | None = None
        self.inside = 0  # reshapes running now
        self.overlaps = 0
        self.applied: list[dict] = []  # what each successful reshape saw: {instance: (uplink, downlink)}

    def check(self) -> None:
        pass

    @classmethod
    def remove_remains(cls, **options) -> list[str]:
        return []

    def task_facts(self) -> dict:
        return {name: TaskFacts(name, "here", name, 0, "running", "2026-01-01T00:00:00Z") for name in self.running}

    def _bring_up(self, progress) -> None:
        self.running = [i.name for i in self.plan.instances]

    def teardown(self) -> None:
        with self.lock:
            self.calls.append("teardown")
            self.running = []
            self._set_state("stopped")

    def started(self) -> list[str]:
        return list(self.running)

    def reshape(self, changed=None) -> None:
        with self.lock:
            self.inside += 1
            self.overlaps += self.inside > 1
            try:
                self.calls.append("reshape")
                if self.hold is not None:
                    self.hold.wait(5)
                if self.fail_reshape:
                    self.fail_reshape -= 1
                    raise RuntimeError("tc: RTNETLINK answers: Invalid argument")
                self.applied.append({i.name: [(f.uplink, f.downlink) for f in i.interfaces]
                                     for i in self.plan.instances})
            finally:
                self.inside -= 1

    def move(self, instances, source, target, overlap) -> None:
        with self.lock:
            if self.fail_move:
                self.fail_move -= 1
                raise RuntimeError("ip: RTNETLINK answers: File exists")
            for instance in instances:
                position = instance.interfaces.index(instance.interface(source))
                detach(self.plan, instance, source)
                attach(self.plan, instance, target, position)
            self.reshape()
            self.moves.append(([i.name for i in instances], source, target, overlap))

    def scale_out(self, label, count):
        with self.lock:
            added = add_instances(self.plan, label, count)
            self.running += [i.name for i in added]
            return added

    def scale_in(self, label, count):
        with self.lock:
            removed = remove_instances(self.plan, label, count)
            self.running = [n for n in self.running if n not in {i.name for i in removed}]
            return removed

    def update_resources(self, instance, cpu_quota=None, memory=None) -> None:
        if cpu_quota:
            instance.cpu_quota = cpu_quota
        if memory:
            instance.memory = memory

    def set_link_state(self, instances, network, up) -> None:
        for instance in instances:
            instance.interface(network).up = up
        if self.fail_reshape:
            self.fail_reshape -= 1
            raise RuntimeError("ip: Cannot find device")

    def set_switch_link_state(self, link, up) -> None:
        link.up = up
        if self.fail_reshape:
            self.fail_reshape -= 1
            raise RuntimeError("ip: Cannot find device")

    def crash(self, instances) -> None:
        self.crashed.update(i.name for i in instances)

    def restart(self, instances) -> None:
        self.crashed.difference_update(i.name for i in instances)

    def run_command(self, instance, command, wait, timeout) -> dict:
        return {"exit_code": 0, "output": "", "timed_out": False} if wait else {"started": True}

    def stress(self, instance, request) -> list[str]:
        return ["stress-ng --cpu 1"]

    def samples(self) -> Samples:
        return {}

    def flow_counters(self):
        return {}

    def instance_pid(self, name):
        return None

    def shaping_report(self) -> dict:
        return {"not_applied": []}
