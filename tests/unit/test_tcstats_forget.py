"""The HTB class reader lets a killed container's namespace go: forget() closes its socket at once and a
round that began before it does not open one again (an open socket keeps a namespace, and the instance's
address, alive: a crashed instance answered pings)."""

from __future__ import annotations

from fogify_net.host import tcstats


class Socket:
    opened: list = []

    def __init__(self, pid):
        self.pid, self.closed = pid, False
        Socket.opened.append(self)

    def classes(self, device):
        return [device]

    def close(self):
        self.closed = True


def test_a_forgotten_namespace_is_closed_and_not_opened_again(monkeypatch):
    monkeypatch.setattr(tcstats, "NetlinkSocket", Socket)
    Socket.opened = []
    reader = tcstats.ClassReader()
    assert reader.read({None: ["fgnp1"], 101: ["eth0"], 102: ["eth0"]}) == {
        (None, "fgnp1"): ["fgnp1"], (101, "eth0"): ["eth0"], (102, "eth0"): ["eth0"]}
    first = {s.pid: s for s in Socket.opened}
    reader.forget({101})
    assert first[101].closed and not first[102].closed and not first[None].closed
    # a round whose targets were taken before the crash still names 101: refused, nothing opened there
    assert (101, "eth0") not in reader.read({None: ["fgnp1"], 101: ["eth0"], 102: ["eth0"]})
    assert [s.pid for s in Socket.opened].count(101) == 1
    # once no round asks for it, the pid is free again (pids are reused, much later)
    reader.read({None: ["fgnp1"], 102: ["eth0"]})
    assert (101, "eth0") in reader.read({101: ["eth0"]})
    reader.close()
    assert all(s.closed for s in Socket.opened)
