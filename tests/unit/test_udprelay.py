"""The UDP relay of published ports on loopback, in this process's own namespace: a flow per client,
idle flows ended, the flow bound kept, datagrams dropped while the instance does not run, nothing left
after close."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fogify_net.host.udprelay import UdpRelay


@pytest.fixture
def echo():
    """A UDP echo on loopback that answers b'echo:' + the datagram; yields its port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                data, peer = server.recvfrom(2048)
            except TimeoutError:
                continue
            server.sendto(b"echo:" + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join()
    server.close()


def ask(port: int, sock: socket.socket, text: bytes, timeout: float = 1.0) -> bytes | None:
    sock.settimeout(timeout)
    sock.sendto(text, ("127.0.0.1", port))
    try:
        return sock.recv(2048)
    except TimeoutError:
        return None


def client() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def test_each_client_gets_its_own_flow_and_its_own_answers(echo):
    relay = UdpRelay("fgt", "127.0.0.1", None, echo, lambda: (None, ["127.0.0.1"]))
    port = relay.open()
    try:
        with client() as a, client() as b:
            assert ask(port, a, b"a") == b"echo:a" and ask(port, b, b"b") == b"echo:b"
            assert ask(port, a, b"") == b"echo:"  # an empty datagram is one too
            assert relay.connections() == 2 and relay.accepted == 2
    finally:
        relay.close()


def test_an_idle_flow_ends_and_a_new_datagram_makes_it_again(echo):
    relay = UdpRelay("fgt", "127.0.0.1", None, echo, lambda: (None, ["127.0.0.1"]), idle_timeout=0.3)
    port = relay.open()
    try:
        with client() as a:
            assert ask(port, a, b"1") == b"echo:1"
            deadline = time.monotonic() + 3
            while relay.connections() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert relay.connections() == 0
            assert ask(port, a, b"2") == b"echo:2" and relay.accepted == 2
    finally:
        relay.close()


def test_beyond_the_flow_bound_and_while_the_instance_is_down_datagrams_are_dropped(echo):
    running = [True]
    relay = UdpRelay("fgt", "127.0.0.1", None, echo, lambda: (None, ["127.0.0.1"]) if running[0] else None,
                     max_flows=1)
    port = relay.open()
    try:
        with client() as a, client() as b:
            assert ask(port, a, b"a") == b"echo:a"
            assert ask(port, b, b"b", timeout=0.3) is None and relay.refused == 1
            running[0] = False
            time.sleep(0.6)  # older than RECHECK_S: the next datagram asks again, and finds no instance
            assert ask(port, a, b"a", timeout=0.3) is None and relay.connections() == 0
            running[0] = True
            assert ask(port, a, b"back") == b"echo:back"
    finally:
        relay.close()


def test_close_ends_the_threads_and_frees_the_port(echo):
    before = set(threading.enumerate())
    relay = UdpRelay("fgt", "127.0.0.1", None, echo, lambda: (None, ["127.0.0.1"]))
    port = relay.open()
    with client() as a:
        assert ask(port, a, b"x") == b"echo:x"
    relay.close()
    assert set(threading.enumerate()) <= before
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))
