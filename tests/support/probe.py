"""An ICMP echo prober for handover tests: run with the host's python3 inside an instance's namespace.

    python3 probe.py --interval 0.005 --duration 2 10.100.0.3 10.100.1.2

Every `interval` it sends one echo request to each target, whether or not the
target is reachable now (ping(8) gives up when the network is unreachable at
start; an instance being moved has no route to its new network yet). When it
ends it prints one JSON object: {"sent": {target: [[seq, epoch], ...]},
"replies": {target: [[seq, epoch], ...]}}. Traffic goes only to the given
addresses, at most duration / interval requests each.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"fgt-probe" + b"\0" * 23
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    sent: dict[str, list] = {t: [] for t in args.targets}
    replies: dict[str, list] = {t: [] for t in args.targets}
    start = time.monotonic()
    seq, next_send = 0, start
    while True:
        now = time.monotonic()
        if now - start >= args.duration:
            break
        if now >= next_send:
            for target in args.targets:
                try:
                    sock.sendto(echo(ident, seq), (target, 0))
                    sent[target].append([seq, time.time()])
                except OSError:  # unreachable now: the probe counts as lost
                    pass
            seq = (seq + 1) & 0xFFFF
            next_send += args.interval
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send - time.monotonic(), 0.01)))
        while ready:
            try:
                packet, (source, _) = sock.recvfrom(2048)
            except BlockingIOError:
                break
            header = (packet[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[header:header + 8])
            if kind == 0 and rid == ident and source in replies:
                replies[source].append([rseq, time.time()])
    deadline = time.monotonic() + 0.5  # late replies of the last requests
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], 0.05)[0]:
            continue
        packet, (source, _) = sock.recvfrom(2048)
        header = (packet[0] & 0x0F) * 4
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[header:header + 8])
        if kind == 0 and rid == ident and source in replies:
            replies[source].append([rseq, time.time()])
    print(json.dumps({"sent": sent, "replies": replies}))


if __name__ == "__main__":
    main()
