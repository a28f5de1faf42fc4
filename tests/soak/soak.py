"""A long day of experiments in a loop: deploy, act, undeploy, different models, the CLI, the API and the SDK
in turn, and now and then the API killed with SIGKILL; every cycle's leftovers counted.

`run(cycles)` returns the figures; tests/soak/test_soak.py runs a short form
in CI and `scripts/soak.sh --cycles N` the long one. A cycle that fails is
counted, its leftovers are removed by `fogify-net cleanup`, and the loop goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from tests.integration.conftest import BASE_IMAGE, snapshot, wait_until
from tests.integration.published_sdk import TEST_RUN_DIR, ApiProcess, free_port

MODES = ("cli", "api", "sdk")
KILL_EVERY = 4  # every fourth cycle kills the API with SIGKILL instead of undeploying


def _node(name: str, cores: int, mhz: int, memory: str) -> dict:
    return {"name": name, "capabilities": {"processor": {"cores": cores, "clock_speed": mhz}, "memory": memory}}


MODELS = [
    {   # one network, two labels
        "services": {"app": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
        "x-fogify": {
            "nodes": [_node("n", 1, 1000, "128M")],
            "networks": [{"name": "lan", "bidirectional": {"bandwidth": "20Mbps", "latency": {"delay": "5ms"},
                                                           "drop": "0.5%"}}],
            "topology": [{"node": "n", "service": "app", "label": "a", "replicas": 2, "networks": ["lan"]},
                         {"node": "n", "service": "app", "label": "b", "replicas": 1, "networks": ["lan"]}],
        },
    },
    {   # two networks, an asymmetric one, a per-pair link and packet-level monitoring
        "services": {"app": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]},
                     "web": {"image": BASE_IMAGE, "command": ["python3", "-m", "http.server", "8000"]}},
        "x-fogify": {
            "nodes": [_node("n", 1, 1000, "128M"), _node("big", 2, 1000, "256M")],
            "networks": [
                {"name": "lan", "bidirectional": {"bandwidth": "50Mbps", "latency": {"delay": "2ms"}},
                 "packet_level_monitoring": True,
                 "links": [{"from_node": "a", "to_node": "b", "bidirectional": True,
                            "properties": {"latency": {"delay": "20ms"}}}]},
                {"name": "wan", "uplink": {"bandwidth": "10Mbps", "latency": {"delay": "10ms", "deviation": "2ms"}},
                 "downlink": {"bandwidth": "20Mbps", "latency": {"delay": "10ms"}}},
            ],
            "topology": [{"node": "n", "service": "app", "label": "a", "replicas": 1, "networks": ["lan", "wan"]},
                         {"node": "big", "service": "web", "label": "b", "replicas": 2, "networks": ["lan"]}],
        },
    },
    {   # one label of five on one network, with a firewall rule
        "services": {"app": {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}},
        "x-fogify": {
            "nodes": [_node("n", 1, 500, "64M")],
            "networks": [{"name": "net", "uplink": {"bandwidth": "5Mbps"}, "downlink": {"bandwidth": "5Mbps"},
                          "firewall_rules": [{"from": "b", "to": "a", "protocol": "tcp", "type": "DROP"}]}],
            "topology": [{"node": "n", "service": "app", "label": "a", "replicas": 4, "networks": ["net"]},
                         {"node": "n", "service": "app", "label": "b", "replicas": 1, "networks": ["net"]}],
        },
    },
]


@dataclass
class Cycle:
    number: int
    mode: str
    model: int
    killed: bool
    seconds: float = 0.0
    error: str = ""
    leftovers: list[str] = field(default_factory=list)


@dataclass
class Figures:
    cycles: list[Cycle] = field(default_factory=list)
    final_leftovers: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Cycle]:
        return [c for c in self.cycles if c.error]

    def table(self) -> str:
        times = sorted(c.seconds for c in self.cycles) or [0.0]
        lines = [f"{'cycle':>5} {'mode':>4} {'model':>5} {'kill':>4} {'seconds':>8} {'leftovers':>9}  error"]
        for c in self.cycles:
            lines.append(f"{c.number:>5} {c.mode:>4} {c.model:>5} {'yes' if c.killed else '':>4} {c.seconds:>8.1f} "
                         f"{len(c.leftovers):>9}  {c.error[:80]}")
        lines.append(f"{len(self.cycles)} cycles, {len(self.failures)} failed, "
                     f"{sum(len(c.leftovers) for c in self.cycles)} leftovers after cycles, "
                     f"{len(self.final_leftovers)} at the end; seconds per cycle: median {times[len(times) // 2]:.1f}, "
                     f"max {times[-1]:.1f}, total {sum(times):.0f}")
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps({"cycles": [c.__dict__ for c in self.cycles], "final_leftovers": self.final_leftovers})


def _ours(before: dict[str, set[str]]) -> list[str]:
    """What is here now and was not before: containers, links, netns, rules, tables, processes, pid files."""
    after = wait_until(lambda: (lambda s: s if s == before else None)(snapshot()), timeout=5) or snapshot()
    left = [f"{key}: {item}" for key in before for item in sorted(after[key] - before[key])]
    left += [f"file: {p}" for p in Path(TEST_RUN_DIR).glob("*.pid")]
    left += ["file: /run/fogify-net.owner"] if Path("/run/fogify-net.owner").exists() else []
    return left


def _cli(workdir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "FOGIFY_RUN_DIR": TEST_RUN_DIR, "FOGIFY_LOG_DIR": str(workdir),
           "FOGIFY_DATA_DIR": str(workdir / "data")}
    result = subprocess.run([sys.executable, "-m", "fogify_net.cli", *args], capture_output=True, text=True,
                            env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"fogify-net {' '.join(args)}: {result.stderr.strip()[-300:]}")
    return result


def _status(url: str) -> dict:
    return requests.get(f"{url}/status/", timeout=10).json()


def _act(url: str, kind: str, **params) -> None:
    r = requests.post(f"{url}/actions/{kind}/", json={"params": params}, timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"{kind}: HTTP {r.status_code} {r.text[:200]}")


def _actions_by_api(url: str, network: str) -> None:
    _act(url, "network", instance_type="a", network=network, bidirectional={"latency": {"delay": "7ms"}})
    _act(url, "horizontal_scaling", instance_type="a", instances=1, type="up")
    _act(url, "vertical_scaling", instance_type="a.1", action="cpu", value="-20")
    _act(url, "command", instance_type="a", instances=1, wait=True, action={"command": "true"})
    _act(url, "partition", **{"from": "a", "to": "b"})
    _act(url, "heal", **{"from": "a", "to": "b"})
    _act(url, "horizontal_scaling", instance_type="a", instances=1, type="down")


def _actions_by_sdk(url: str, network: str, workdir: Path) -> None:
    from FogifySDK import FogifySDK  # fogify-net's own SDK

    fogify = FogifySDK(url)
    fogify.poll_interval = 0.2
    fogify.update_network("a", network, {"bidirectional": {"latency": {"delay": "9ms"}}})
    fogify.stress("a.1", cpu=20, duration=2)
    fogify.horizontal_scaling_up("b")
    fogify.link_down("b.1", network)
    fogify.link_up("b.1", network)
    fogify.horizontal_scaling_down("b")
    assert fogify.get_metrics_from("a.1") is not None


def _one_cycle(cycle: Cycle, workdir: Path) -> None:
    model = MODELS[cycle.model]
    network = model["x-fogify"]["networks"][0]["name"]
    path = workdir / f"model{cycle.model}.yaml"
    path.write_text(yaml.safe_dump(model))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api: ApiProcess | None = None
    try:
        if cycle.mode == "cli":  # the CLI starts its API daemon, and stops it at undeploy
            _cli(workdir, "deploy", str(path), "--url", url)
            _cli(workdir, "status", "--url", url)
            instance = _status(url)["instances"][-1]
            _cli(workdir, "exec", "--url", url, instance["name"], "ip", "-brief", "addr")
        else:
            api = ApiProcess(workdir, port).start()
            if cycle.mode == "api":
                r = requests.post(f"{url}/topology/", files={"file": ("m.yaml", path.read_text())}, timeout=60)
                if r.status_code != 200:
                    raise RuntimeError(f"deploy: HTTP {r.status_code} {r.text[:200]}")
                wait_until(lambda: _status(url)["status"] != "deploying", timeout=120, interval=0.3)
                if _status(url)["status"] != "running":
                    raise RuntimeError(f"deploy: {_status(url)['message']}")
                _actions_by_api(url, network)
            else:
                from FogifySDK import FogifySDK

                fogify = FogifySDK(url, str(path))
                fogify.poll_interval = 0.2
                fogify.deploy(timeout=120)
                _actions_by_sdk(url, network, workdir)
        if cycle.killed:
            pid = api.process.pid if api else int((Path(TEST_RUN_DIR) / "api.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            if api:
                api.process.wait(30)
            else:
                wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30)
                (Path(TEST_RUN_DIR) / "api.pid").unlink(missing_ok=True)
                (Path(TEST_RUN_DIR) / "api.auto").unlink(missing_ok=True)
            api = ApiProcess(workdir, free_port()).start()  # finds the record, removes what the killed one left
            message = _status(api.url)["message"]
            if "stopped without undeploying" not in message:
                raise RuntimeError(f"the new API did not report the killed one's deployment: {message!r}")
        elif cycle.mode == "cli":
            _cli(workdir, "undeploy", "--url", url)
        elif cycle.mode == "api":
            requests.delete(f"{url}/topology/", timeout=30)
            wait_until(lambda: _status(url)["status"] == "idle", timeout=120, interval=0.3)
        else:
            from FogifySDK import FogifySDK

            FogifySDK(url).undeploy(timeout=120)
    finally:
        if api is not None and api.stop() != 0:
            raise RuntimeError(f"the API exited badly: {api.log()[-300:]}")


def run(cycles: int, report=print) -> Figures:
    """Run `cycles` cycles; `report` gets one line per cycle."""
    figures = Figures()
    before = snapshot()
    with tempfile.TemporaryDirectory(prefix="fgt-soak-") as tmp:
        workdir = Path(tmp)
        for number in range(1, cycles + 1):
            cycle = Cycle(number, MODES[(number - 1) % len(MODES)], (number - 1) % len(MODELS),
                          killed=number % KILL_EVERY == 0)
            started = time.monotonic()
            try:
                _one_cycle(cycle, workdir)
            except Exception as error:
                cycle.error = f"{type(error).__name__}: {error}"
                report(traceback.format_exc())
            cycle.seconds = time.monotonic() - started
            cycle.leftovers = _ours(before)
            if cycle.leftovers or cycle.error:
                _cli(workdir, "cleanup")
            figures.cycles.append(cycle)
            report(f"cycle {number}: {cycle.mode}, model {cycle.model}{', killed' if cycle.killed else ''}: "
                   f"{cycle.seconds:.1f}s, {len(cycle.leftovers)} leftovers{', ' + cycle.error if cycle.error else ''}")
        figures.final_leftovers = _ours(before)
    return figures


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    from fogify_net.machine import machine_lock

    with machine_lock():
        figures = run(args.cycles, report=lambda line: print(line, flush=True))
    print(figures.table())
    if args.json:
        Path(args.json).write_text(figures.as_json())
    return 0 if not figures.failures and not figures.final_leftovers and not any(
        c.leftovers for c in figures.cycles) else 1


if __name__ == "__main__":
    sys.exit(main())
