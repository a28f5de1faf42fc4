"""Published ports: what the relay (host/publish.py) costs against the app reached inside its own namespace.

One instance (fogify-net/base, 1 CPU, no memory limit) runs `iperf3 -s` and an
HTTP server holding a --size MiB file; both ports are published on 127.0.0.1.
Each row is measured twice in the same run:

- relay: from this machine, through the published port (the relay's listener,
  a socket in the instance's namespace, its loopback);
- floor: the same client run inside the instance's network namespace
  (nsenter --net), straight to 127.0.0.1 there: the app and loopback alone.

Rows: iperf3 TCP for --seconds each way, iperf3 UDP at --udp-rate into the
instance (its port published for TCP, the control connection, and UDP on one
host port: host/udprelay.py carries the datagrams), a curl download of the
file, and connection setup (sequential connect + one small HTTP request + close,
Python client) p50/p95. The relay runs in this process; its CPU time per GB
relayed is this process's CPU over the iperf3 runs.

    sudo PYTHONPATH=. /opt/fogify-net/venv/bin/python bench/published_ports.py [--seconds 5] [--size 512]

It holds the machine lock while it runs; the emulation is torn down at the end, also on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine_line, machine_lock, markdown_table  # noqa: E402

from fogify_net.backends.local import LocalBackend  # noqa: E402
from fogify_net.compile.plan import compile_model  # noqa: E402
from fogify_net.compile.resources import HostFacts  # noqa: E402
from fogify_net.model import ModelBuilder  # noqa: E402

SETUP_CLIENT = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
times = []
for _ in range(n):
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /who HTTP/1.0\\r\\n\\r\\n")
        while s.recv(65536):
            pass
    times.append(time.perf_counter() - start)
print(" ".join(f"{t * 1000:.4f}" for t in times))
"""


def model(size_mib: int, iperf_port: int):
    m = ModelBuilder()
    script = (f"head -c {size_mib}M /dev/zero > /tmp/big && echo ok > /tmp/who && iperf3 -s -D -p 5201 && "
              "cd /tmp && exec python3 -m http.server 80")
    m.service("app", image="fogify-net/base:latest", command=["sh", "-c", script],
              ports=[f"{iperf_port}:5201", "80", f"{iperf_port}:5201/udp"])
    m.node("one", cpus=1.0)
    m.network("lan")
    m.blueprint("app", node="one", service="app", networks=["lan"])
    return m.build()


def in_netns(pid: int | None, argv: list[str]) -> list[str]:
    return argv if pid is None else ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]


def iperf(pid: int | None, port: int, seconds: int, reverse: bool) -> tuple[float, float]:
    """Gbit/s received, and this process's CPU seconds meanwhile (the relay's, when it carries the run)."""
    cpu = time.process_time()
    out = subprocess.run(in_netns(pid, ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J",
                                        *(["-R"] if reverse else [])]),
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)["end"]["sum_received"]
    return result["bits_per_second"] / 1e9, (time.process_time() - cpu) / (result["bytes"] / 1e9)


def iperf_udp(pid: int | None, port: int, seconds: int, rate: str) -> tuple[float, float, float]:
    """Mbit/s received, % lost, and this process's CPU seconds per GB sent (the relay's, through it)."""
    cpu = time.process_time()
    out = subprocess.run(in_netns(pid, ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-u",
                                        "-b", rate, "-l", "1400", "-J"]),
                         capture_output=True, text=True, check=True).stdout
    end = json.loads(out)["end"]
    received, sent = end["sum_received"], end["sum_sent"]
    lost = 100.0 * (1 - received["bytes"] / sent["bytes"]) if sent["bytes"] else 0.0
    return received["bits_per_second"] / 1e6, max(0.0, lost), (time.process_time() - cpu) / (sent["bytes"] / 1e9)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def download(pid: int | None, port: int) -> float:
    out = subprocess.run(in_netns(pid, ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}",
                                        f"http://127.0.0.1:{port}/big"]), capture_output=True, text=True, check=True)
    return float(out.stdout) * 8 / 1e9


def setup(pid: int | None, port: int, n: int) -> list[float]:
    out = subprocess.run(in_netns(pid, [sys.executable, "-c", SETUP_CLIENT, str(port), str(n)]),
                         capture_output=True, text=True, check=True).stdout
    return sorted(float(x) for x in out.split())


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
                if s.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"nothing answers on published port {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--size", type=int, default=512, help="MiB downloaded over HTTP")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--udp-rate", default="500M", help="iperf3 -b of the UDP row")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    rows = []
    with machine_lock():
        iperf_port = free_port()
        plan = compile_model(model(args.size, iperf_port),
                             HostFacts(cpu_mhz=2000, cpus=os.cpu_count() or 1, memory=2**34))
        emu = LocalBackend(plan, run_dir="/run/fogify-net-bench")
        emu.deploy()
        try:
            http_port = emu.plan.instance("app.1").ports[1].bound
            wait_listening(http_port)
            pid = emu.instance_pid("app.1")
            time.sleep(3)  # iperf3 -D and the file are ready
            for what, reverse in (("iperf3 TCP, this machine -> instance", False),
                                  ("iperf3 TCP, instance -> this machine (-R)", True)):
                relay, cpu = iperf(None, iperf_port, args.seconds, reverse)
                floor, _ = iperf(pid, 5201, args.seconds, reverse)
                rows.append([what, f"{relay:.2f} Gbit/s", f"{floor:.2f} Gbit/s", f"{cpu:.2f} CPU s/GB"])
            relay, relay_lost, cpu = iperf_udp(None, iperf_port, args.seconds, args.udp_rate)
            floor, floor_lost, _ = iperf_udp(pid, 5201, args.seconds, args.udp_rate)
            rows.append([f"iperf3 UDP at {args.udp_rate}bit/s, 1400 B, this machine -> instance",
                         f"{relay:.0f} Mbit/s ({relay_lost:.1f}% lost)", f"{floor:.0f} Mbit/s ({floor_lost:.1f}% lost)",
                         f"{cpu:.2f} CPU s/GB"])
            rows.append([f"HTTP download of {args.size} MiB (curl)", f"{download(None, http_port):.2f} Gbit/s",
                         f"{download(pid, 80):.2f} Gbit/s", ""])
            relay, floor = setup(None, http_port, args.connections), setup(pid, 80, args.connections)
            for label, q in (("p50", 0.5), ("p95", 0.95)):
                rows.append([f"connect + small HTTP request + close, {label} ({args.connections})",
                             f"{relay[int(q * (len(relay) - 1))]:.2f} ms", f"{floor[int(q * (len(floor) - 1))]:.2f} ms",
                             ""])
        finally:
            emu.teardown()
    load = Path("/proc/loadavg").read_text().split()[:3]
    table = markdown_table(["published port", "relay", "floor (in the namespace)", "relay CPU"], rows)
    emit(f"### Published ports\n\n{table}\n{machine_line()}; load average {' '.join(load)} at the end\n",
         args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
