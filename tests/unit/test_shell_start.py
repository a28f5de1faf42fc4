"""Mininet's control shells start without mnexec: the same process, environment and session."""

from __future__ import annotations

import os
import subprocess

from fogify_net.backends.local.dockerhost import lean_shell

MININET_SHELL = ["mnexec", "-cd", "env", "PS1=\x7f", "bash", "--norc", "--noediting", "-is", "mininet:fgnh1"]


def test_mnexec_and_env_become_popen_options():
    argv, params = lean_shell(MININET_SHELL, {"close_fds": False, "stdin": 5})
    assert argv == ["bash", "--norc", "--noediting", "-is", "mininet:fgnh1"]
    assert params["env"]["PS1"] == "\x7f"
    assert params["env"]["PATH"] == os.environ["PATH"]
    assert params["close_fds"] is True and params["start_new_session"] is True and params["stdin"] == 5


def test_other_mnexec_uses_are_left_alone():
    for argv in (["mnexec", "-cdn", "env", "PS1=x", "bash"], ["mnexec", "-da", "42", "ip", "link"], ["bash", "-is"],
                 ["mnexec", "-cd", "env", "A=1"]):
        assert lean_shell(argv, {"close_fds": False}) == (argv, {"close_fds": False})


def test_the_shell_leads_its_own_session_with_only_std_descriptors():
    opened = os.open(os.devnull, os.O_RDONLY)
    spare = os.dup2(opened, 213)  # inheritable, and a number nothing else uses
    try:
        argv, params = lean_shell(["mnexec", "-cd", "env", "FGT_X=1", "sh", "-c",
                                   'echo "$FGT_X $(ps -o sid= -p $$) $$"; ls /proc/$$/fd'], {"close_fds": False})
        out = subprocess.run(argv, capture_output=True, text=True, check=True, **params).stdout.split("\n")
    finally:
        os.close(spare)
        os.close(opened)
    value, sid, pid = out[0].split()
    assert value == "1" and sid == pid
    assert str(spare) not in out[1:]
