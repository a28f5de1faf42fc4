"""TCP goodput over time, for trace tests: run with the host's python3 inside instances' namespaces.

    python3 goodput.py receive --port 5301                # prints "ready", then "<epoch> <bytes>" lines
    python3 goodput.py send --port 5301 --seconds 6 IP     # sends as fast as the link takes it

The receiver samples the kernel's count of in-order bytes received (tcp_info's
tcpi_bytes_received) every 20 ms with the time of the sample, so a receiver
that the scheduler holds up reads late but counts right. Traffic goes only to
the given address, for at most `seconds`.
"""

from __future__ import annotations

import argparse
import socket
import struct
import threading
import time

TCPI_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in struct tcp_info (Linux >= 4.1)


def receive(port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
            print(f"{time.time():.4f} {struct.unpack_from('Q', info, TCPI_BYTES_RECEIVED)[0]}", flush=True)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    while conn.recv(1 << 20):
        pass
    done.set()
    sampler.join()


def send(address: str, port: int, seconds: float) -> None:
    conn = socket.create_connection((address, port), timeout=10)
    end = time.monotonic() + seconds
    block = b"x" * 65536
    while time.monotonic() < end:
        conn.sendall(block)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("receive", "send"))
    parser.add_argument("address", nargs="?")
    parser.add_argument("--port", type=int, default=5301)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.role == "receive":
        receive(args.port)
    else:
        send(args.address, args.port, min(args.seconds, 120.0))


if __name__ == "__main__":
    main()
