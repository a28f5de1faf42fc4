"""Fixtures for tests that build real emulations: root, Docker and the base image are needed."""

from __future__ import annotations

import os
import re
import subprocess
import time
from contextlib import contextmanager

import pytest

BASE_IMAGE = "fogify-net/base:latest"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.images.get(BASE_IMAGE)
    except Exception as error:  # the reason is shown in the skip message
        return f"needs Docker and {BASE_IMAGE} ({error})"
    return None


@pytest.fixture(scope="session")
def machine():
    """Skip, with the reason, unless this machine can run emulations; hold the machine meanwhile.

    Emulations use machine-wide names (bridges, ports, rules), so two test runs
    or benchmarks at once would collide: they queue on an exclusive lock.
    """
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from fogify_net.machine import machine_lock

    with machine_lock(quiet=True):
        yield


IPTABLES_NFT = re.compile(r"table ip6? (filter|nat|raw|mangle|security)")


def snapshot() -> dict[str, set[str]]:
    """Everything an emulation could leave behind, as sets of lines to compare before and after."""

    def lines(*argv: str) -> set[str]:
        out = subprocess.run(list(argv), capture_output=True, text=True).stdout
        return {re.sub(r"\[\d+:\d+\]", "", line).strip() for line in out.splitlines() if line.strip()}

    from fogify_net.host.ovs import our_bridges

    processes = {
        line for line in lines("ps", "-eo", "args")
        if "mininet:fgn" in line or line.startswith(("fogify-delayd", "stress-ng"))
    }
    return {
        "containers": lines("docker", "ps", "-a", "--filter", "label=fogify-net=1", "--format", "{{.Names}}"),
        "links": {line.split(":")[1].strip().split("@")[0] for line in lines("ip", "-o", "link")},
        "netns": lines("ip", "netns", "list"),
        # not the `*table` headers: a table appears once first used (the raw table with our first
        # deploy on a fresh kernel, as in the VM) and stays, empty, after its rules are gone
        "iptables": {line for line in lines("iptables-save") if not line.startswith(("#", "*"))},
        # not iptables-nft's own tables (compared by their rules above), which stay as the headers do
        "nft": {line for line in lines("nft", "list", "tables") if not IPTABLES_NFT.fullmatch(line)},
        "processes": processes,
        "ovs": set(our_bridges()),
    }


def without_fidelity(kinds: list[str]) -> list[str]:
    """Annotation kinds without the fidelity monitor's marks: those follow the machine's load (a busy
    CI machine may see FIDELITY_START/END at any time), not the actions a test checks."""
    return [k for k in kinds if not k.startswith("FIDELITY_")]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def assert_clean(before: dict[str, set[str]]) -> None:
    """Nothing of ours is left: every category equals its state before the test (links vanish async)."""
    after = wait_until(lambda: (lambda s: s if s == before else None)(snapshot()), timeout=5) or snapshot()
    for key in before:
        assert after[key] == before[key], f"{key} left behind: {sorted(after[key] ^ before[key])}"


@contextmanager
def emulation(model, host_mhz: float = 2000.0, shaping: str = "auto", **options):
    """Deploy `model` in this process, yield the Emulation, and always tear it down (`options`: LocalBackend's)."""
    from fogify_net.backends.local import LocalBackend
    from fogify_net.compile.plan import compile_model
    from fogify_net.compile.resources import HostFacts

    plan = compile_model(model, HostFacts(cpu_mhz=host_mhz, cpus=os.cpu_count() or 1, memory=2**34))
    emu = LocalBackend(plan, shaping=shaping, run_dir="/run/fogify-net-test", **options)
    emu.deploy()
    try:
        yield emu
    finally:
        emu.teardown()


@contextmanager
def real_api(data_dir, token: str | None = None, **controller_options):
    """A real API on an ephemeral loopback port: yield (url, controller); then stop both and check nothing is left.

    `controller_options` are the Controller's; the defaults are the tests' (a fast sampling
    interval, a 2 GHz host so CPU shares are stable, the tests' run directory).
    """
    import threading

    from werkzeug.serving import make_server

    from fogify_net.controller import Controller
    from fogify_net_api import create_app

    controller_options = {"run_dir": "/run/fogify-net-test", "interval": 0.5, "host_mhz": 2000,
                          **controller_options}
    before = snapshot()
    controller = Controller(data_dir=data_dir, **controller_options)
    server = make_server("127.0.0.1", 0, create_app(controller, token=token), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", controller
    finally:
        server.shutdown()
        controller.close()
    assert_clean(before)


def iperf(client, server, server_ip: str, seconds: int = 5, udp_rate: str | None = None) -> float:
    """Mbit/s received by `server` from `client`, with the host's iperf3 in both namespaces."""
    import json

    port = 5201
    proc = server.popen(["iperf3", "-s", "-1", "-p", str(port)])
    try:
        wait_until(lambda: f":{port}" in server.cmd("ss -ltn"), timeout=5)
        args = f"iperf3 -c {server_ip} -p {port} -t {seconds} -J" + (f" -u -b {udp_rate}" if udp_rate else "")
        result = json.loads(client.cmd(args))
        key = "sum" if udp_rate else "sum_received"
        return result["end"][key]["bits_per_second"] / 1e6
    finally:
        proc.kill()
        proc.wait()


def base_model():
    """Two replicas on one network with every kind of shaping, so every mechanism leaves its marks."""
    from fogify_net.model import ModelBuilder

    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("half", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps", "latency": {"delay": "10ms"}, "drop": "1%"})
    m.blueprint("a", node="half", service="app", networks=["lan"], replicas=2)
    return m.build()
