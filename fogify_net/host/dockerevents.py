"""Following Docker's events for fogify-net's containers on one daemon.

Without it, a container killed by the kernel's OOM killer, by hand, or by a
dockerd restart still showed as running in /status/. The watcher reads
Docker's event stream (die, oom, start of containers labelled fogify-net=1)
and hands each container's id to `reconcile`, which looks at the real state;
the event is only a hint. The local backend reconciles under its lock, so its
own kills and restarts (which it makes holding that lock) are no news; a
Swarm node's agent (backends/swarm/agent/events.py) records what it sees for
the controller. When the stream breaks (dockerd restarted), it reconnects with
backoff and asks for every container to be reconciled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from ..compile.naming import LABEL

log = logging.getLogger(__name__)

ACTIONS = ("die", "oom", "start")
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


def stop_reason(state: dict) -> str:
    """Why a container does not run, from its inspect's `State`, in the words /status/ and the
    DEGRADED annotation use on both backends."""
    if state.get("OOMKilled"):
        return "was OOM-killed"
    error = f", {state['Error']}" if state.get("Error") else ""
    return f"stopped (exit code {state.get('ExitCode')}{error})"


class DockerWatcher:
    """Calls `reconcile(container id or None)` for every event of ours; None means: check them all."""

    def __init__(self, client, reconcile: Callable[[str | None], None]):
        self.client = client
        self.reconcile = reconcile
        self._stop = threading.Event()
        self._stream = None
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):  # closing a broken stream
                stream.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        failures = 0
        first = True
        while not self._stop.is_set():
            try:
                self._stream = self.client.events(decode=True, since=int(time.time()),
                                                  filters={"type": "container", "label": f"{LABEL}=1",
                                                           "event": list(ACTIONS)})
                if not first:
                    self._safely(None)  # what happened while we were not listening
                first = False
                failures = 0
                for event in self._stream:
                    if self._stop.is_set():
                        return
                    self._safely(event.get("id") or event.get("Actor", {}).get("ID"))
            except Exception as error:  # dockerd went away (restart): reconnect
                if self._stop.is_set():
                    return
                log.warning("Docker's event stream broke (%s); reconnecting", error)
            if self._stop.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]):
                return
            failures += 1
            first = False

    def _safely(self, container_id: str | None) -> None:
        try:
            self.reconcile(container_id)
        except Exception:  # a failed check must not end the watch
            log.exception("reconciling after a Docker event failed")
