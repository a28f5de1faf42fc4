"""The machine lock: a second user waits for the first; the holder and its children do not wait for themselves."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from fogify_net.machine import HELD, machine_lock

HOLD = """
import fcntl, sys
with open(sys.argv[1], "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()
"""

TRY = """
import sys
from fogify_net.machine import machine_lock
with machine_lock(sys.argv[1], quiet=True):
    print("got it")
"""


def test_a_second_user_waits_until_the_first_lets_go(tmp_path):
    path = str(tmp_path / "machine.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        got = threading.Event()

        def wait_for_it():
            with machine_lock(path, quiet=True):
                got.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not got.wait(0.5)  # held elsewhere: we wait
        holder.stdin.close()
        assert got.wait(5)
        waiter.join(5)
    finally:
        holder.kill()
        holder.wait()


def test_the_holder_and_its_children_go_through(tmp_path):
    path = str(tmp_path / "machine.lock")
    with machine_lock(path, quiet=True):
        with machine_lock(path, quiet=True):  # again in this process (cleanup called from a test)
            pass
        child = subprocess.run([sys.executable, "-c", TRY, path], capture_output=True, text=True, timeout=10)
        assert child.stdout.strip() == "got it", child.stderr
    assert os.environ.get(HELD) != path  # let go: the next user waits again
