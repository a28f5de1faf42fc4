"""Python side of the user-space delay line: runs and supervises `fogify-delayd`.

The kernel here has no netem, so delay and jitter come from one helper process
that holds packets handed to it by iptables NFQUEUE rules (see delayd.c). This
module owns that process: it keeps the configuration we want, applies it over
the helper's line protocol, and when the helper dies it restarts it and replays
the configuration, so a crash costs the packets in flight, not the emulation.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
TABLE_MAX = 4096  # values of a queue's own table (the helper's limit)
BUILT_BINARY = Path(__file__).with_name("fogify-delayd")
REPLY_TIMEOUT_S = 10.0
REALTIME_PRIORITY = 10  # SCHED_FIFO: above every ordinary process, below the kernel's own threads (50)
CPU_CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")  # cgroup v1: real-time needs rt_runtime_us, which the root has
RESTART_BACKOFF_S = (0.0, 0.1, 0.5, 2.0, 5.0)  # by deaths within 1 s of a start


class DelayLineError(RuntimeError):
    """The helper refused a command or could not be run."""


class HelperDown(DelayLineError):
    """The helper is not running; the supervisor restarts it and replays the configuration."""


@dataclass(frozen=True)
class QueueConfig:
    """A queue's delay. With a `table` (a custom distribution's, in netem's units: 8192 is one
    deviation) the queue samples it; `distribution` then only names it for people."""

    delay_ms: float
    jitter_ms: float = 0.0
    correlation_pct: float = 0.0
    distribution: str = "uniform"
    table: tuple[int, ...] | None = None

    def commands(self, queue: int) -> list[str]:
        """The helper's lines: the queue's own table first if it has one, then `set` (whole
        microseconds and permille)."""
        lines = [f"table {queue} " + " ".join(map(str, self.table))] if self.table is not None else []
        lines.append(f"set {queue} {round(self.delay_ms * 1000)} {round(self.jitter_ms * 1000)} "
                     f"{round(self.correlation_pct * 10)} {'table' if self.table is not None else self.distribution}")
        return lines


# Upper edges (us) of the helper's lateness histogram: bucket i counts packets released at least
# LATE_EDGES_US[i - 1] (0 for i = 0) and less than LATE_EDGES_US[i] us late; the last bucket has
# no upper end. The same table is `late_edges_us` in delayd.c (a unit test holds them equal).
LATE_EDGES_US = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000,
                 3000, 5000, 7500, 10000, 20000, 50000, 100000, 200000, 500000, 1000000)


@dataclass(frozen=True)
class QueueStats:
    """One queue's counters since it was bound (all cumulative but `held`)."""

    queue: int
    pkts: int
    held: int
    maxheld: int
    dropped: int  # the kernel's: queue full or our socket full
    late_avg_us: float
    late_max_us: float
    overbudget: int = 0  # dropped by the helper: past its byte budget
    stamped: int = 0  # packets scheduled from the kernel's arrival stamp (the rest: from when they were read)
    released: int = 0
    late_hist: tuple[int, ...] = ()  # released packets per lateness bucket (LATE_EDGES_US); () from an old helper


def find_binary() -> str:
    """$FOGIFY_DELAYD, else fogify-delayd on PATH, else the one built in the source tree."""
    path = os.environ.get("FOGIFY_DELAYD") or shutil.which("fogify-delayd") or str(BUILT_BINARY)
    if not os.access(path, os.X_OK):
        raise DelayLineError(f"fogify-delayd not found or not executable: {path} (run make in {BUILT_BINARY.parent})")
    return path


def parse_stats_line(line: str) -> QueueStats:
    """Parse `q <queue> key=value ...` from the helper's `stats` answer."""
    words = line.split()
    fields = dict(word.split("=", 1) for word in words[2:])
    hist = fields.get("late_hist")
    return QueueStats(
        queue=int(words[1]),
        pkts=int(fields["pkts"]),
        held=int(fields["held"]),
        maxheld=int(fields["maxheld"]),
        dropped=int(fields["dropped"]),
        late_avg_us=float(fields["late_avg_us"]),
        late_max_us=float(fields["late_max_us"]),
        overbudget=int(fields.get("overbudget", 0)),
        stamped=int(fields.get("stamped", 0)),
        released=int(fields.get("released", 0)),
        late_hist=tuple(map(int, hist.split(","))) if hist else (),
    )


def validate(queue: int, config: QueueConfig) -> None:
    """Reject bad parameters here, with names the caller knows, not the helper's."""
    if not 0 <= queue <= 65535:
        raise ValueError(f"queue must be 0..65535, got {queue}")
    if config.delay_ms < 0 or config.jitter_ms < 0:
        raise ValueError("delay_ms and jitter_ms must be >= 0")
    if max(config.delay_ms, config.jitter_ms) > 3_600_000:
        raise ValueError("delay_ms and jitter_ms must be at most one hour")
    if not 0 <= config.correlation_pct <= 100:
        raise ValueError(f"correlation_pct must be 0..100, got {config.correlation_pct}")
    if config.table is not None:
        if not 1 <= len(config.table) <= TABLE_MAX or any(not -32768 <= v <= 32767 for v in config.table):
            raise ValueError(f"a distribution table has 1 to {TABLE_MAX} values in -32768..32767")
    elif config.distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)} or come with its table, "
                         f"got {config.distribution!r}")


class DelayLine:
    """One `fogify-delayd` process serving any number of NFQUEUE queues.

    The desired configuration lives here, so a restarted helper gets it back.
    All pipe traffic goes through one lock: commands from API threads and the
    supervisor's replay never interleave.
    """

    def __init__(
        self,
        run_dir: str | Path = "/run/fogify-net",
        name: str = "fogify-delayd",
        on_state: Callable[[str, str], None] | None = None,
        binary: str | None = None,
        nice: int = -10,
        realtime: int | None = REALTIME_PRIORITY,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.name = name
        self.pid_file = self.run_dir / f"{name}.pid"
        self.on_state = on_state
        self.binary = binary
        self.nice = nice
        self.realtime = realtime
        self._queues: dict[int, QueueConfig] = {}
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._started_at = 0.0
        self.restarts = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Run the helper and the supervisor that keeps it running."""
        with self._lock:
            if self._proc is not None:
                return
            self.binary = self.binary or find_binary()
            self._stopping.clear()
            self._kill_stale()
            self._spawn()
            try:
                self._send("ping")
                if (reply := self._read_line()) != "pong":
                    raise DelayLineError(f"fogify-delayd answered {reply!r} to ping")
                self._replay()
            except DelayLineError:
                proc, self._proc = self._proc, None
                assert proc is not None
                self._close(proc, 1.0)
                self.pid_file.unlink(missing_ok=True)
                raise
        self._supervisor = threading.Thread(target=self._supervise, name=f"{self.name}-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the helper's stdin: it accepts every held packet, unbinds and exits."""
        self._stopping.set()
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                self._close(proc, timeout)
            self.pid_file.unlink(missing_ok=True)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout)
        self._supervisor = None

    def alive(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    # -- configuration -----------------------------------------------------

    def set_queue(
        self,
        queue: int,
        delay_ms: float,
        jitter_ms: float = 0,
        correlation_pct: float = 0,
        distribution: str = "uniform",
        table: tuple[int, ...] | None = None,
    ) -> None:
        """Bind `queue` if new and delay packets arriving from now on.

        Packets already held keep their release time, so nothing is dropped or
        reordered (without jitter) by a change. A `table` is a custom
        distribution's (named `distribution`), sampled instead of a built-in one.
        """
        config = QueueConfig(float(delay_ms), float(jitter_ms), float(correlation_pct), distribution,
                             tuple(table) if table is not None else None)
        validate(queue, config)
        with self._lock:
            previous = self._queues.get(queue)
            self._queues[queue] = config
            try:
                for line in config.commands(queue):
                    self._command(line)
            except HelperDown as exc:
                log.warning("queue %d: %s; it is applied when the helper is back", queue, exc)
            except DelayLineError:
                if previous is None:
                    del self._queues[queue]
                else:
                    self._queues[queue] = previous
                raise

    def del_queue(self, queue: int) -> None:
        """Release everything the queue holds at once and unbind it."""
        with self._lock:
            if self._queues.pop(queue, None) is None:
                return
            try:
                self._command(f"del {queue}")
            except HelperDown as exc:
                log.warning("queue %d: %s; a restarted helper will not bind it", queue, exc)

    def queues(self) -> dict[int, QueueConfig]:
        with self._lock:
            return dict(self._queues)

    def stats(self) -> dict[int, QueueStats]:
        """Per-queue counters from the helper (lateness is actual minus planned release)."""
        with self._lock:
            self._send("stats")
            result = {}
            while (line := self._read_line()) != "end":
                if not line.startswith("q "):
                    raise DelayLineError(f"unexpected stats line: {line!r}")
                stats = parse_stats_line(line)
                result[stats.queue] = stats
            return result

    def ping(self) -> bool:
        with self._lock:
            self._send("ping")
            return self._read_line() == "pong"

    # -- helper process ----------------------------------------------------

    def _spawn(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        assert self.binary is not None
        self._proc = subprocess.Popen(
            [self.binary],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,  # a ^C for the CLI must not kill it before we release its packets
        )
        self._buf = b""
        self._started_at = time.monotonic()
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self._prioritise(self._proc.pid)
        threading.Thread(target=self._log_stderr, args=(self._proc,), name=f"{self.name}-stderr", daemon=True).start()
        log.info("started %s (pid %d)", self.binary, self._proc.pid)

    def _prioritise(self, pid: int) -> None:
        """Its timing is the emulated delay: let it preempt the emulated applications.

        Real-time (SCHED_FIFO) wakes it at each release time even when the
        emulation keeps both cores busy; under nice -10 alone it waited up to
        tens of ms behind them (BENCHMARKS.md, capacity). With cgroup v1's
        real-time group scheduling a process may only turn real-time in a cpu
        cgroup that has real-time runtime: a helper started from a service's
        cgroup moves to the root one first. Without any, it keeps nice only.

        We set both from here, as root, on the helper's pid, and the helper
        itself never asks: it drops to user nobody with CAP_NET_ADMIN alone and
        no_new_privs (delayd.c, drop_privileges), and keeping CAP_SYS_NICE for
        one call would leave a process that reads untrusted packets able to
        starve the machine with any real-time priority. A caller with
        CAP_SYS_NICE may change another process's policy whatever its uid, so
        it does not matter whether the helper has dropped its privileges yet;
        the policy and the nice value survive its setresuid(), and the helper
        cannot change them back (tests/integration/test_fidelity.py checks).
        """
        try:
            os.setpriority(os.PRIO_PROCESS, pid, self.nice)
        except OSError as exc:
            log.warning("cannot set fogify-delayd's nice value to %d: %s", self.nice, exc)
        if not self.realtime:
            return
        param = os.sched_param(self.realtime)
        try:
            os.sched_setscheduler(pid, os.SCHED_FIFO, param)
            return
        except PermissionError:
            pass
        except OSError as exc:
            log.warning("fogify-delayd stays at nice %d, not real-time: %s", self.nice, exc)
            return
        try:
            (CPU_CGROUP_ROOT / "cgroup.procs").write_text(f"{pid}\n")
            os.sched_setscheduler(pid, os.SCHED_FIFO, param)
        except OSError as exc:
            log.warning("fogify-delayd stays at nice %d, not real-time (its cpu cgroup has no real-time "
                        "runtime): %s", self.nice, exc)

    def _kill_stale(self) -> None:
        """A helper left by a crashed run still owns its queues; our binds would fail."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            return
        if comm != Path(self.binary or "fogify-delayd").name[:15]:
            return
        log.warning("stopping stale %s (pid %d) from %s", comm, pid, self.pid_file)
        os.kill(pid, signal.SIGTERM)  # it releases its packets and unbinds
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _close(proc: subprocess.Popen[bytes], timeout: float) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            log.warning("%d did not exit on EOF, killing it", proc.pid)
            proc.kill()
            proc.wait()

    @staticmethod
    def _log_stderr(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            log.info("%s", raw.decode(errors="replace").rstrip())

    def _replay(self) -> None:
        for queue, config in self._queues.items():
            try:
                for line in config.commands(queue):
                    self._command(line)
            except HelperDown:
                raise
            except DelayLineError as exc:  # e.g. another process took the queue: keep the rest
                log.error("restoring queue %d: %s", queue, exc)

    def _supervise(self) -> None:
        """Wait for the helper to die; then report, restart and replay.

        The first restart is immediate: until it is back, the rules' --queue-bypass
        lets traffic through undelayed (see DelayQueues). Helpers that die young back
        off, and so does a restart that fails to start one (it counts as a death at
        once): a crash loop or a missing binary does not spin.
        """
        quick_deaths = 0
        while True:
            proc = self._proc
            if proc is None:
                return
            rc = proc.wait()
            if self._stopping.is_set():
                return
            quick_deaths = quick_deaths + 1 if time.monotonic() - self._started_at < 1.0 else 0
            detail = f"fogify-delayd (pid {proc.pid}) exited with status {rc}; restarting"
            log.error("%s", detail)
            self._notify("degraded", detail)
            if self._stopping.wait(RESTART_BACKOFF_S[min(quick_deaths, len(RESTART_BACKOFF_S) - 1)]):
                return
            with self._lock:
                if self._stopping.is_set() or self._proc is not proc:
                    return
                try:
                    self._spawn()
                    self._replay()
                except (OSError, DelayLineError) as exc:
                    log.error("restarting fogify-delayd failed: %s", exc)
                    self._started_at = time.monotonic()  # a start that failed is a quick death: back off
                    if self._proc is not proc and self._proc.poll() is None:
                        self._proc.kill()  # the next loop sees it dead and backs off
                    continue
                self.restarts += 1
                new_pid = self._proc.pid
            self._notify("ok", f"fogify-delayd restarted (pid {new_pid}), {len(self._queues)} queues restored")

    def _notify(self, state: str, detail: str) -> None:
        if self.on_state is not None:
            try:
                self.on_state(state, detail)
            except Exception:  # a faulty observer must not stop the supervisor
                log.exception("on_state callback failed")

    # -- line protocol -----------------------------------------------------

    def _command(self, line: str) -> None:
        self._send(line)
        reply = self._read_line()
        if reply != "ok":
            shown = line if len(line) <= 80 else f"{line[:60]} ... ({len(line.split()) - 2} values)"
            raise DelayLineError(f"{shown!r}: {reply}")

    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise HelperDown("fogify-delayd is not running")
        try:
            proc.stdin.write(line.encode() + b"\n")
        except OSError as exc:
            raise HelperDown(f"fogify-delayd is not running: {exc}") from exc

    def _read_line(self) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
            if not ready:
                log.error("fogify-delayd (pid %d) did not answer in %.0f s, killing it", proc.pid, REPLY_TIMEOUT_S)
                proc.kill()  # the supervisor restarts it
                raise HelperDown("fogify-delayd did not answer")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise HelperDown("fogify-delayd exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()
