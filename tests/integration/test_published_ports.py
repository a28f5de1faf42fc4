"""Published ports for real: an app in an instance answers on this machine's port, through a restart,
a crash and scaling, and the port is closed at undeploy; a port in use fails the deploy cleanly."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from fogify_net.errors import Conflict
from fogify_net.model import ModelBuilder

from .conftest import BASE_IMAGE, assert_clean, emulation, snapshot, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

# the app: an HTTP server on port 80 whose file `who` names the instance that serves it
WEB = ["sh", "-c", "echo $FOGIFY_INSTANCE > /tmp/who && cd /tmp && exec python3 -m http.server 80"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(port: int, timeout: float = 10.0) -> str | None:
    """GET /who on this machine's port; retried while the app starts. None when nothing answers."""

    def attempt() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/who", timeout=2) as answer:
                return answer.read().decode().strip()
        except OSError:
            return None

    return wait_until(attempt, timeout=timeout, interval=0.2)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def web_model(ports: list, replicas: int = 1, **extra_services: list) -> ModelBuilder:
    m = ModelBuilder()
    m.service("web", image=BASE_IMAGE, command=WEB, ports=ports)
    m.node("half", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps", "latency": {"delay": "20ms"}})
    m.blueprint("web", node="half", service="web", networks=["lan"], replicas=replicas)
    for name, service_ports in extra_services.items():
        m.service(name, image=BASE_IMAGE, command=WEB, ports=service_ports)
        m.blueprint(name, node="half", service=name, networks=["lan"])
    return m


def bound(emu, name: str) -> list[int]:
    return [p.bound for p in emu.plan.instance(name).ports]


def test_a_published_port_serves_the_instance_through_restart_crash_and_scaling(machine):
    before = snapshot()
    port = free_port()
    with emulation(web_model([f"127.0.0.1:{port}:80", "80"], replicas=2).build()) as emu:
        assert bound(emu, "web.1")[0] == port and bound(emu, "web.1")[1] not in (None, port)
        assert len(bound(emu, "web.2")) == 1  # the fixed port is web.1's only; the free one is every replica's
        start = time.monotonic()
        assert fetch(port) == "web.1"
        print(f"published port: first answer {time.monotonic() - start:.2f} s after deploy")
        assert fetch(bound(emu, "web.1")[1]) == "web.1" and fetch(bound(emu, "web.2")[0]) == "web.2"
        # the management path is not the shaped one: over the 20 ms link (40 ms round trips) the handshake
        # and the request would take 80 ms at least
        start = time.monotonic()
        for _ in range(10):
            assert fetch(port) == "web.1"
        assert (time.monotonic() - start) / 10 < 0.075

        web1 = emu.plan.instance("web.1")
        pid = emu.instance_pid("web.1")
        emu.restart([web1])  # the restart action: a new container process, a new namespace
        assert emu.instance_pid("web.1") != pid
        assert fetch(port) == "web.1"

        held = socket.create_connection(("127.0.0.1", port), timeout=5)
        emu.crash([web1])
        held.settimeout(5)
        assert held.recv(10) == b""  # a connection into the crashed instance ends
        held.close()
        with pytest.raises(OSError):  # and new ones are refused, while the port stays published
            urllib.request.urlopen(f"http://127.0.0.1:{port}/who", timeout=2)
        emu.restart([web1])
        assert fetch(port) == "web.1"

        web2_port = bound(emu, "web.2")[0]
        emu.scale_in("web", 1)
        assert refused(web2_port)
        (web2,) = emu.scale_out("web", 1)
        assert len(web2.ports) == 1 and fetch(web2.ports[0].bound) == web2.name
        ports = [p for name in ("web.1", web2.name) for p in bound(emu, name)]
    assert all(refused(p) for p in ports)
    assert_clean(before)


def test_a_host_port_in_use_fails_the_deploy_and_nothing_is_left(machine):
    before = snapshot()
    first = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        model = web_model([f"{first}:80"], other=[f"127.0.0.1:{busy}:80"]).build()
        expected = rf"services\.other\.ports: other\.1 cannot publish 127\.0\.0\.1:{busy}->80 on this machine: Address"
        with pytest.raises(Conflict, match=expected), emulation(model):
            pass
    assert refused(first)  # the port opened before the failure was closed again
    with socket.socket() as again:
        again.bind(("127.0.0.1", first))
    assert_clean(before)


# a UDP echo on port 5683 (CoAP's) that prefixes each answer with the instance's name
ECHO = ["python3", "-c", "import os, socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5683))\n"
        "while True:\n"
        "    data, peer = s.recvfrom(2048); s.sendto(os.environ['FOGIFY_INSTANCE'].encode() + b':' + data, peer)\n"]


def udp_ask(port: int, text: str, sock: socket.socket | None = None, timeout: float = 10.0) -> str | None:
    """Send `text` to this machine's UDP port until an answer comes (the app may be starting); None if none."""
    own = sock is None
    sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(text.encode(), ("127.0.0.1", port))
            try:
                return sock.recv(2048).decode()
            except TimeoutError:
                continue
        return None
    finally:
        if own:
            sock.close()


def test_a_published_udp_port_answers_each_client_through_restart_and_crash(machine):
    before = snapshot()
    port = free_port()
    m = ModelBuilder()
    m.service("coap", image=BASE_IMAGE, command=ECHO, ports=[f"{port}:5683/udp"])
    m.node("half", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"latency": {"delay": "20ms"}})
    m.blueprint("coap", node="half", service="coap", networks=["lan"])
    with emulation(m.build()) as emu:
        assert emu.plan.instance("coap.1").ports[0].describe() == f"127.0.0.1:{port}->5683/udp"
        assert udp_ask(port, "hello") == "coap.1:hello"
        udp = (socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(*udp) as a, socket.socket(*udp) as b:
            assert udp_ask(port, "from a", a) == "coap.1:from a" and udp_ask(port, "from b", b) == "coap.1:from b"
            (relay,) = emu.publishers.relays("coap.1")
            assert relay.connections() == 3  # a flow per client (the first one's too, until it idles out)
            start = time.monotonic()
            for i in range(10):  # the management path: the 20 ms link would make each round trip 40 ms
                assert udp_ask(port, str(i), a) == f"coap.1:{i}"
            assert (time.monotonic() - start) / 10 < 0.02

        instance = emu.plan.instance("coap.1")
        emu.restart([instance])  # a new namespace: the flows are made again there
        assert udp_ask(port, "again") == "coap.1:again"
        emu.crash([instance])
        assert udp_ask(port, "anyone?", timeout=1.5) is None
        emu.restart([instance])
        assert udp_ask(port, "back") == "coap.1:back"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
    assert_clean(before)
