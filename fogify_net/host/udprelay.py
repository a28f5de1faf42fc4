"""A published UDP port: datagrams on this machine relayed into an instance and its answers back.

UDP has no connections, so the relay keeps a flow per client address: the first
datagram from a client makes an upstream socket inside the instance's network
namespace (host/netns.py), connected to the port on the container's own loopback;
the app's answers on it go back to that client from the published port, as
Docker's userland proxy does. A flow idle for `idle_timeout` seconds ends; at
most `max_flows` live at once (a datagram beyond them is dropped and counted).

As for TCP (host/publish.py) the path is the management one, not shaped. The
instance's pid is asked for again when a flow's last answer is RECHECK_S old
(each asking reads /proc; per datagram it cost the relay most of its CPU), so a
restarted container is reached in its new namespace (its flows are made again);
while it does not run, datagrams are dropped. An app that answers ICMP port unreachable on loopback (it listens
on its emulated address only) gets the flow moved to the next address.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

from .netns import Upstream, socket_in

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 60.0  # seconds a flow lives without a datagram either way
MAX_FLOWS = 128  # clients of one published port at once
STOP_WAIT = 2.0  # seconds a stop waits for the relay's threads
RECHECK_S = 0.5  # how old a flow's knowledge of its instance's pid may be
WAKE_S = 0.2  # the receiver looks at close() this often (a shutdown does not wake an unconnected socket)
DATAGRAM = 65535  # the largest UDP payload
RECEIVE_BUFFER = 4 * 2**20  # bytes queued per socket while the relay's Python catches up with a burst


class _Flow:
    """One client's datagrams into the instance: its upstream socket there, and the thread reading answers."""

    def __init__(self, client: tuple, pid: int, addresses: list[str], sock: socket.socket):
        self.client, self.pid, self.addresses, self.sock = client, pid, addresses, sock
        self.last = self.checked = time.monotonic()
        self.thread: threading.Thread | None = None
        self.ended = False  # a shutdown wakes the answering thread with an empty read: not an answer


class UdpRelay:
    """One published UDP port: host_ip:port on this machine -> `target` inside the instance."""

    def __init__(self, name: str, host_ip: str, port: int | None, target: int, upstream: Upstream,
                 max_flows: int = MAX_FLOWS, idle_timeout: float = IDLE_TIMEOUT):
        self.name, self.host_ip, self.target = name, host_ip, target
        self.port = port or 0  # the bound port once open
        self._upstream = upstream
        self._max = max_flows
        self._idle = idle_timeout
        self._sock: socket.socket | None = None
        self._receiver: threading.Thread | None = None
        self._flows: dict[tuple, _Flow] = {}
        self._lock = threading.Lock()
        self._closing = False
        self.accepted = self.refused = 0  # flows made; datagrams dropped (too many flows, instance down)

    def open(self) -> int:
        """Bind (OSError when the port is taken), start relaying; returns the bound port."""
        family = socket.AF_INET6 if ":" in self.host_ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        _large_buffer(sock)
        try:
            sock.bind((self.host_ip, self.port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._receiver = threading.Thread(target=self._receive, name=f"fgn-publish-udp-{self.port}", daemon=True)
        self._receiver.start()
        log.info("%s: publishing %s:%d/udp -> %d", self.name, self.host_ip, self.port, self.target)
        return self.port

    def _receive(self) -> None:
        """Datagrams from clients, each into its client's flow; idle flows end on the way."""
        sock = self._sock
        sock.settimeout(WAKE_S)
        expired_at = time.monotonic()
        while not self._closing:
            try:
                data, client = sock.recvfrom(DATAGRAM)
            except TimeoutError:
                if time.monotonic() - expired_at > 1.0:
                    expired_at = self._expire()
                continue
            except OSError as error:
                if not self._closing:
                    log.warning("%s: receiving on port %d/udp failed: %s", self.name, self.port, error)
                return
            if self._closing:  # woken by close()
                return
            flow = self._flow(client)
            if flow is None:
                continue
            flow.last = time.monotonic()
            try:
                flow.sock.send(data)
            except OSError as error:  # the namespace went, or nothing listens there (ICMP seen)
                log.debug("%s: datagram into %s:%d failed: %s", self.name, flow.addresses[0], self.target, error)
            if flow.last - expired_at > 1.0:
                expired_at = self._expire()

    def _flow(self, client: tuple) -> _Flow | None:
        """The client's flow, made (or made again in a restarted instance's namespace) when needed."""
        flow = self._flows.get(client)
        now = time.monotonic()
        if flow is not None and now - flow.checked < RECHECK_S:
            return flow
        where = self._upstream()
        with self._lock:
            flow = self._flows.get(client)
            if flow is not None and where is not None and flow.pid == where[0]:
                flow.checked = now
                return flow
            if flow is not None:
                self._end(flow)
            if where is None or len(self._flows) >= self._max:
                self.refused += 1
                return None
            pid, addresses = where
            made = self._connect(client, pid, list(addresses))
            if made is not None:
                self._flows[client] = made
                self.accepted += 1
        return made

    def _connect(self, client: tuple, pid: int, addresses: list[str]) -> _Flow | None:
        try:
            sock = socket_in(pid, socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as error:  # the process is gone: the instance stopped meanwhile
            log.debug("%s: no namespace of pid %d: %s", self.name, pid, error)
            return None
        _large_buffer(sock)
        sock.settimeout(min(1.0, self._idle))
        sock.connect((addresses[0], self.target))
        flow = _Flow(client, pid, addresses, sock)
        flow.thread = threading.Thread(target=self._answer, args=(flow,), name=f"fgn-relay-udp-{self.port}",
                                       daemon=True)
        flow.thread.start()
        return flow

    def _answer(self, flow: _Flow) -> None:
        """The app's answers to this flow, back to its client from the published port."""
        while True:
            try:
                data = flow.sock.recv(DATAGRAM)
            except TimeoutError:
                if flow.ended:
                    return
                continue
            except ConnectionRefusedError:  # nothing on this address: the next one gets the next datagram
                if len(flow.addresses) > 1:
                    flow.addresses.pop(0)
                    with contextlib.suppress(OSError):
                        flow.sock.connect((flow.addresses[0], self.target))
                continue
            except OSError:  # closed: the flow ended
                return
            if flow.ended:
                return
            flow.last = time.monotonic()
            try:
                self._sock.sendto(data, flow.client)
            except OSError as error:
                log.debug("%s: answer to %s failed: %s", self.name, flow.client, error)

    def _expire(self) -> float:
        """End the flows idle for longer than the timeout; returns when it looked."""
        now = time.monotonic()
        with self._lock:
            for flow in [f for f in self._flows.values() if now - f.last > self._idle]:
                self._end(flow)
        return now

    def _end(self, flow: _Flow) -> None:
        """Forget and close a flow (the lock is held); its answering thread ends on the closed socket."""
        self._flows.pop(flow.client, None)
        flow.ended = True
        with contextlib.suppress(OSError):
            flow.sock.shutdown(socket.SHUT_RDWR)
        flow.sock.close()

    def connections(self) -> int:
        with self._lock:
            return len(self._flows)

    def drop_connections(self) -> None:
        """End every flow now (the instance crashed or went away: our sockets in its namespace would keep it
        alive). The port stays published."""
        with self._lock:
            for flow in list(self._flows.values()):
                self._end(flow)

    def close(self) -> None:
        """Stop relaying and end every flow; returns when the relay's threads have ended."""
        with self._lock:
            self._closing = True
            threads = [f.thread for f in self._flows.values() if f.thread is not None]
        self.drop_connections()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            if self._receiver is not None:
                self._receiver.join(STOP_WAIT)
            self._sock.close()
            self._sock = None
        deadline = time.monotonic() + STOP_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _large_buffer(sock: socket.socket) -> None:
    """A receive buffer beyond net.core.rmem_max (root may force it); the default one where that fails."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                return
