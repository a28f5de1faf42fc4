"""The counters of a device's HTB classes (rate, bytes, drops, backlog), read over rtnetlink.

The fidelity monitor reads every shaped link once per round, on hundreds of
devices, some in containers' namespaces: one `tc -s class show` per device
would fork hundreds of processes a second. Here one NETLINK_ROUTE socket per
namespace stays open (made inside the namespace by netns.socket_in), and a round is one
class dump per device, about 30 us each.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass

from .netns import socket_in

log = logging.getLogger(__name__)

NETLINK_ROUTE = 0
RTM_GETLINK, RTM_NEWLINK = 18, 16
RTM_GETTCLASS, RTM_NEWTCLASS = 42, 40
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME = 3
TCA_KIND, TCA_OPTIONS, TCA_STATS2 = 1, 2, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE = 1, 3
TCA_HTB_PARMS, TCA_HTB_RATE64 = 1, 6

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_TCMSG = struct.Struct("=BxxxiIII")
_NLATTR = struct.Struct("=HH")
_BASIC = struct.Struct("=QI")  # gnet_stats_basic: bytes, packets
_QUEUE = struct.Struct("=IIIII")  # gnet_stats_queue: qlen, backlog, drops, requeues, overlimits
_RATESPEC_RATE = struct.Struct("=I")  # tc_ratespec.rate (bytes/s), at offset 8


@dataclass(frozen=True)
class ClassStats:
    """One HTB class's counters (bytes, packets, drops, overlimits cumulative; qlen and backlog now)."""

    classid: int  # major << 16 | minor
    rate: int  # bit/s, as configured
    bytes: int
    packets: int
    drops: int
    overlimits: int
    qlen: int  # packets queued now
    backlog: int  # bytes queued now

    @property
    def minor(self) -> int:
        return self.classid & 0xFFFF


def _attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    attrs = {}
    while offset + 4 <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return attrs


def _attribute(kind: int, value: bytes) -> bytes:
    data = _NLATTR.pack(4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def parse_class(payload: bytes) -> ClassStats | None:
    """A RTM_NEWTCLASS message's payload (after the netlink header) as ClassStats; None if not HTB."""
    _, _, handle, _, _ = _TCMSG.unpack_from(payload)
    attrs = _attributes(payload, _TCMSG.size)
    if attrs.get(TCA_KIND, b"").rstrip(b"\0") != b"htb":
        return None
    options = _attributes(attrs.get(TCA_OPTIONS, b""))
    rate = 0
    if TCA_HTB_RATE64 in options:
        rate = struct.unpack_from("=Q", options[TCA_HTB_RATE64])[0]
    elif TCA_HTB_PARMS in options:
        rate = _RATESPEC_RATE.unpack_from(options[TCA_HTB_PARMS], 8)[0]
    stats = _attributes(attrs.get(TCA_STATS2, b""))
    sent, packets = _BASIC.unpack_from(stats[TCA_STATS_BASIC]) if TCA_STATS_BASIC in stats else (0, 0)
    qlen, backlog, drops, _, overlimits = (_QUEUE.unpack_from(stats[TCA_STATS_QUEUE])
                                           if TCA_STATS_QUEUE in stats else (0, 0, 0, 0, 0))
    return ClassStats(handle, rate * 8, sent, packets, drops, overlimits, qlen, backlog)


class NetlinkSocket:
    """A NETLINK_ROUTE socket bound in one network namespace (that of `pid`, or ours for None)."""

    def __init__(self, pid: int | None = None):
        self.pid = pid
        self._seq = 0
        self._ifindex: dict[str, int] = {}
        self.sock = socket_in(pid, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)

    def close(self) -> None:
        self.sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; the (type, payload) of every message of the answer, up to DONE."""
        self._seq += 1
        seq = self._seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        messages = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, _, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return messages
                payload = data[offset + _NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return messages
                if mtype == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", payload)[0]
                    if error:
                        raise OSError(error, os.strerror(error))
                    return messages
                messages.append((mtype, payload))
            if not flags & NLM_F_DUMP:
                return messages

    def ifindex(self, device: str) -> int:
        index = self._ifindex.get(device)
        if index is None:
            body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attribute(IFLA_IFNAME, device.encode() + b"\0")
            answer = self._request(RTM_GETLINK, 0, body)
            if not answer or answer[0][0] != RTM_NEWLINK:
                raise OSError(f"no device {device}")
            index = self._ifindex[device] = _IFINFOMSG.unpack_from(answer[0][1])[2]
        return index

    def classes(self, device: str) -> list[ClassStats]:
        """The device's HTB classes now; [] when it has none. OSError when the device is gone."""
        index = self.ifindex(device)
        try:
            answer = self._request(RTM_GETTCLASS, NLM_F_DUMP, _TCMSG.pack(socket.AF_UNSPEC, index, 0, 0, 0))
        except OSError:
            self._ifindex.pop(device, None)
            raise
        found = [parse_class(payload) for mtype, payload in answer if mtype == RTM_NEWTCLASS]
        if not answer and device in self._ifindex:  # a dump of a vanished index answers nothing: look again next time
            self._ifindex.pop(device, None)
        return [stats for stats in found if stats is not None]


class ClassReader:
    """HTB class counters of devices in many namespaces, one open socket per namespace.

    `read({pid or None: [device, ...]})` gives {(pid, device): [ClassStats]};
    a namespace or device that is gone is left out (and its socket closed).

    An open socket keeps its network namespace alive, and with it the
    container's interfaces and addresses: a container that is killed must
    have its socket closed first (`forget`), or its links outlive it until
    the next round (a crashed instance would still answer pings).
    """

    def __init__(self) -> None:
        self._sockets: dict[int | None, NetlinkSocket] = {}
        self._forgotten: set[int] = set()  # namespaces going away: not to be opened again
        self._lock = threading.Lock()  # a round and a forget() from an action's thread

    def read(self, wanted: dict[int | None, list[str]]) -> dict[tuple[int | None, str], list[ClassStats]]:
        found: dict[tuple[int | None, str], list[ClassStats]] = {}
        with self._lock:
            for pid, devices in wanted.items():
                if pid in self._forgotten:
                    continue
                try:
                    sock = self._sockets.get(pid) or self._sockets.setdefault(pid, NetlinkSocket(pid))
                except OSError as error:
                    log.debug("no netlink socket in the namespace of %s: %s", pid, error)
                    continue
                for device in devices:
                    try:
                        found[(pid, device)] = sock.classes(device)
                    except OSError as error:
                        log.debug("no classes of %s in %s: %s", device, pid, error)
            self._keep(set(wanted))
            self._forgotten &= set(wanted)  # a round that still asks (it began before the forget) is refused
        return found

    def forget(self, pids: set[int]) -> None:
        """These processes' namespaces are going (a crash, a scale-in, a container that died): close their
        sockets now, waiting for a round in progress, and open none there again."""
        with self._lock:
            self._forgotten |= pids
            self._keep(set(self._sockets) - set(pids))

    def _keep(self, pids: set[int | None]) -> None:
        for pid in [p for p in self._sockets if p not in pids]:
            self._sockets.pop(pid).close()

    def close(self) -> None:
        with self._lock:
            self._keep(set())
