"""fogify-delayd under real NFQUEUE traffic: the byte budget for held packets, and its dropped privileges."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fogify_net.host.delayline.driver import BUILT_BINARY

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, iptables")]

NETNS = "fgthd0"
QUEUE = 7
CAP_NET_ADMIN = 12


@pytest.fixture
def netns(machine):
    subprocess.run(["make", "-s", "-C", str(BUILT_BINARY.parent)], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", NETNS, "iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp",
                        "--dport", "9999", "-j", "NFQUEUE", "--queue-num", str(QUEUE)], check=True)
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", NETNS, str(BUILT_BINARY), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)


def ask(helper: subprocess.Popen, line: str) -> list[str]:
    helper.stdin.write(line + "\n")
    helper.stdin.flush()
    replies = [helper.stdout.readline().strip()]
    while line == "stats" and replies[-1] != "end":
        replies.append(helper.stdout.readline().strip())
    return replies


def send_udp(count: int, size: int) -> None:
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"[s.sendto(b'x' * {size}, ('127.0.0.1', 9999)) for _ in range({count})]")
    subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, "-c", code], check=True, timeout=30)


def test_held_packets_stay_within_the_byte_budget(netns):
    helper = start("--budget-bytes", "20000")
    try:
        assert ask(helper, f"set {QUEUE} 5000000 0 0 uniform") == ["ok"]  # held for 5 s
        send_udp(40, 1000)  # each counts as 1,500 bytes (META mode: the kernel does not say): 13 fit
        stats = ask(helper, "stats")
        fields = dict(word.split("=") for word in stats[0].split()[2:])
        assert int(fields["pkts"]) == 40
        assert int(fields["held"]) == 13 and int(fields["overbudget"]) == 27, stats
    finally:
        helper.stdin.close()
        assert helper.wait(10) == 0


def test_the_helper_keeps_only_cap_net_admin(netns):
    helper = start()
    try:
        assert ask(helper, "ping") == ["pong"]
        with open(f"/proc/{helper.pid}/status") as f:  # ip netns exec execs the helper in place
            status = dict(line.split(":", 1) for line in f.read().splitlines())
        assert status["Name"].strip() == "fogify-delayd"
        assert status["Uid"].split()[:2] == ["65534", "65534"] and status["Gid"].split()[:2] == ["65534", "65534"]
        assert int(status["CapEff"], 16) == 1 << CAP_NET_ADMIN
        assert int(status["CapPrm"], 16) == 1 << CAP_NET_ADMIN
        assert status["NoNewPrivs"].strip() == "1"
        assert ask(helper, f"set {QUEUE} 1000 0 0 uniform") == ["ok"]  # binding still works
        assert ask(helper, "stats")[-1] == "end"
        assert ask(helper, f"del {QUEUE}") == ["ok"]
    finally:
        helper.stdin.close()
        assert helper.wait(10) == 0
