"""Published ports: a listener on this machine per port, relaying each TCP connection into an instance
(UDP datagrams: host/udprelay.py).

Instances run with `network_mode: none`, so Docker cannot publish their ports.
Here a listener on host_ip:port accepts a connection, creates the upstream
socket inside the instance's network namespace (host/netns.py: a socket keeps
the namespace it was made in) and connects it to the port on the container's
own loopback, then relays both directions, half-closes included, until both
ends are done or either fails. The path is the management path, not the
emulated one: it crosses no shaped link (an app that listens only on its
emulated address is tried there next; inside its namespace that address is
local too, so that path is not shaped either).

Bounds: at most `max_connections` relayed connections per port at once (more
are reset at once), a connect timeout, blocking I/O in threads (no polling).
The instance's pid is asked for per connection, so a restarted container is
reached in its new namespace; while it does not run, connections are reset.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import threading
import time
from collections.abc import Sequence

from ..compile.plan import InstancePlan
from ..errors import Conflict
from .netns import Upstream, socket_in
from .udprelay import UdpRelay

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 128  # relayed connections of one published port at once
CONNECT_TIMEOUT = 5.0  # seconds to connect to the app inside the instance
BUFFER = 256 * 1024
BACKLOG = 128
STOP_WAIT = 2.0  # seconds a stop waits for the relays' threads


class PortRelay:
    """One published port: host_ip:port on this machine -> `target` inside the instance."""

    def __init__(self, name: str, host_ip: str, port: int | None, target: int, upstream: Upstream,
                 max_connections: int = MAX_CONNECTIONS, connect_timeout: float = CONNECT_TIMEOUT):
        self.name, self.host_ip, self.target = name, host_ip, target
        self.port = port or 0  # the bound port once open
        self._upstream = upstream
        self._max = max_connections
        self._timeout = connect_timeout
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._connections: dict[int, tuple[socket.socket, list[socket.socket]]] = {}  # id -> (client, upstream)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closing = False
        self.accepted = self.refused = 0

    def open(self) -> int:
        """Bind and listen (OSError when the address is taken), start accepting; returns the bound port."""
        family = socket.AF_INET6 if ":" in self.host_ip else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # a port left in TIME_WAIT by the last run's connections binds again; a listening one does not
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host_ip, self.port))
            listener.listen(BACKLOG)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name=f"fgn-publish-{self.port}", daemon=True)
        self._acceptor.start()
        log.info("%s: publishing %s:%d -> %d", self.name, self.host_ip, self.port, self.target)
        return self.port

    def _accept(self) -> None:
        listener = self._listener
        while True:
            try:
                client, _ = listener.accept()
            except OSError as error:
                if self._closing:
                    return
                log.warning("%s: accept on port %d failed: %s", self.name, self.port, error)
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.1)  # out of descriptors: let relays end rather than spin
                continue
            with self._lock:
                if self._closing or len(self._connections) >= self._max:
                    if not self._closing:
                        self.refused += 1
                        log.warning("%s: %d connections on port %d already, resetting one more",
                                    self.name, self._max, self.port)
                    _reset(client)
                    continue
                self.accepted += 1
                self._connections[id(client)] = (client, [])
                thread = threading.Thread(target=self._serve, args=(client,), name=f"fgn-relay-{self.port}",
                                          daemon=True)
                self._threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        """Connect upstream, then relay: this thread one way, another the other way."""
        upstreams = self._connections[id(client)][1]
        upstream = None
        try:
            upstream = self._connect()
            if upstream is None:
                _reset(client)
                return
            with self._lock:
                upstreams.append(upstream)
                if self._closing:  # a stop came while connecting
                    return
            back = threading.Thread(target=_pump, args=(upstream, client), name=f"fgn-relay-{self.port}",
                                    daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
        except Exception as error:  # a relay's failure ends its connection, never the listener
            log.debug("%s: relay on port %d ended: %s", self.name, self.port, error)
        finally:
            with self._lock:
                self._connections.pop(id(client), None)
                self._threads.discard(threading.current_thread())
            client.close()
            if upstream is not None:
                upstream.close()

    def _connect(self) -> socket.socket | None:
        """A socket connected to the target in the instance's namespace; None when it does not run or
        nothing answers there (the caller resets the client)."""
        where = self._upstream()
        if where is None:
            return None
        pid, addresses = where
        for address in addresses:
            try:
                sock = socket_in(pid, socket.AF_INET, socket.SOCK_STREAM)
            except OSError as error:  # the process is gone: the instance stopped meanwhile
                log.debug("%s: no namespace of pid %d: %s", self.name, pid, error)
                return None
            sock.settimeout(self._timeout)
            try:
                sock.connect((address, self.target))
            except ConnectionRefusedError:
                sock.close()
                continue
            except OSError as error:
                log.info("%s: connecting to %s:%d failed: %s", self.name, address, self.target, error)
                sock.close()
                return None
            sock.settimeout(None)
            return sock
        log.info("%s: nothing listens on port %d (tried %s)", self.name, self.target, ", ".join(addresses))
        return None

    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def drop_connections(self) -> None:
        """End every relayed connection now (the instance crashed or went away: our sockets in its
        namespace would keep it, and its addresses, alive). The listener stays."""
        with self._lock:
            for client, upstreams in self._connections.values():
                for sock in (client, *upstreams):
                    _shutdown(sock)

    def close(self) -> None:
        """Stop listening and end every connection; returns when the relays' threads have ended."""
        with self._lock:
            self._closing = True
            threads = list(self._threads)
        if self._listener is not None:
            _shutdown(self._listener)  # wakes the blocked accept()
            if self._acceptor is not None:
                self._acceptor.join(STOP_WAIT)
            self._listener.close()
            self._listener = None
        self.drop_connections()
        deadline = time.monotonic() + STOP_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy source -> sink until source's end of stream (then half-close sink) or an error (then end both)."""
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    while True:
        try:
            n = source.recv_into(buffer)
            if n == 0:
                _shutdown(sink, socket.SHUT_WR)
                return
            sink.sendall(view[:n])
        except OSError:
            _shutdown(source)
            _shutdown(sink)
            return


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    with contextlib.suppress(OSError):  # not connected, or closed already
        sock.shutdown(how)


def _reset(sock: socket.socket) -> None:
    """Close with a reset, so the client sees the connection refused at once rather than an empty reply."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Publishers:
    """The published ports of one deployment, per instance: opened all or none, closed with the instance."""

    def __init__(self) -> None:
        self._relays: dict[str, list[PortRelay | UdpRelay]] = {}
        self._lock = threading.Lock()

    def open(self, instance: InstancePlan, upstream: Upstream) -> None:
        """Listen on every port `instance` publishes, and record the bound ports in its plan. Conflict
        naming the port, the instance and its service's field when one is taken; none is left open."""
        relays: list[PortRelay | UdpRelay] = []
        for port in instance.ports:
            kind = UdpRelay if port.spec.protocol == "udp" else PortRelay
            relay = kind(instance.name, port.host_ip, port.spec.published, port.target, upstream)
            try:
                port.bound = relay.open()
            except OSError as error:
                for opened in relays:
                    opened.close()
                for done in instance.ports:
                    done.bound = None
                field = f"services.{instance.service.name}.ports"
                raise Conflict(f"{field}: {instance.name} cannot publish {port.describe()} on this machine: "
                               f"{error.strerror or error}") from None
            relays.append(relay)
        if relays:
            with self._lock:
                self._relays.setdefault(instance.name, []).extend(relays)

    def close(self, names: Sequence[str]) -> None:
        """Stop publishing these instances' ports (scale-in, teardown)."""
        with self._lock:
            relays = [relay for name in names for relay in self._relays.pop(name, [])]
        for relay in relays:
            relay.close()

    def close_all(self) -> None:
        with self._lock:
            names = list(self._relays)
        self.close(names)

    def drop_connections(self, names: Sequence[str]) -> None:
        """End these instances' relayed connections; their ports stay published (a crash, a lost container)."""
        with self._lock:
            relays = [relay for name in names for relay in self._relays.get(name, [])]
        for relay in relays:
            relay.drop_connections()

    def relays(self, name: str) -> list[PortRelay | UdpRelay]:
        with self._lock:
            return list(self._relays.get(name, []))
