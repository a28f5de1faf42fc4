"""The io stressor never follows a symlink the container made: /tmp a symlink, or any component of it."""

from __future__ import annotations

import os
import sys
import time

import pytest

from fogify_net.host.iostress import open_container_dir, write_files


def relative(path) -> str:
    return str(path).lstrip("/")  # as seen from /proc/<our pid>/root, the host's root


def test_a_symlinked_directory_is_refused(tmp_path):
    target = tmp_path / "host-etc"
    target.mkdir()
    container = tmp_path / "container"
    container.mkdir()
    (container / "tmp").symlink_to(target)  # what a hostile container does to its /tmp
    with pytest.raises(OSError):
        open_container_dir(os.getpid(), relative(container / "tmp"))
    (container / "real").mkdir()
    (container / "real" / "sub").symlink_to(target)
    with pytest.raises(OSError):
        open_container_dir(os.getpid(), relative(container / "real" / "sub"))
    assert list(target.iterdir()) == []


def test_files_are_written_and_removed_in_the_directory(tmp_path):
    fd = open_container_dir(os.getpid(), relative(tmp_path))
    try:
        written = write_files(fd, 1 << 20, time.monotonic() + 0.3)
    finally:
        os.close(fd)
    assert written >= 1 << 20
    assert list(tmp_path.iterdir()) == []


def test_the_stress_action_uses_this_writer_not_stress_ng_hdd(monkeypatch):
    from fogify_net.host import stress
    from fogify_net.model.actions import Stress

    spawned = []
    monkeypatch.setattr(stress, "cgroup_dirs", lambda pid: {})
    monkeypatch.setattr(stress.StressRunner, "_spawn", lambda self, argv, dirs, cpus, name: spawned.append(argv))
    commands = stress.StressRunner().start(4242, 1.0, Stress(target=None, duration=5, io=50))
    assert spawned[0][:3] == [sys.executable, "-m", "fogify_net.host.iostress"] and "--pid" in spawned[0]
    assert not any("--temp-path" in arg or "--hdd" in arg for arg in spawned[0])
    assert commands == ["io: 1 writers of 64M files in /tmp for 5s"]
