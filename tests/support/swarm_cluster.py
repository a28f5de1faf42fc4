"""A Docker Swarm cluster on one machine: extra Docker daemons in network namespaces.

Each daemon is a "machine" of its own:

- network namespace `<prefix><n>` (its iptables, routes, VXLAN port and
  docker_gwbridge are its own, so nothing clashes with the main daemon's);
- UTS namespace with hostname `<prefix><n>`, so Swarm nodes have distinct
  hostnames and `node.hostname==...` placement works;
- data root `/var/lib/<prefix>-docker<n>`, exec root, pid file, socket,
  daemon.json and trust key under `/run/<prefix><n>/`;
- cgroup parent `/<prefix><n>`, so its containers are apart from the main
  daemon's `/docker/...` and are found (and killed) by that path;
- its own managed containerd (dockerd starts one under its exec root when
  `--containerd` is not given).

The namespaces are joined by the "underlay": a Linux bridge `<prefix>br0` that
lives in a namespace of its own, `<prefix>ul`, so the root namespace's
iptables (Docker's FORWARD DROP with br_netfilter) never sees the frames.
Every daemon reaches it through a veth `ul0` with address `<underlay>.<n>`.

Nothing here touches the root namespace's network or the main daemon, except
for reading the image to copy (`docker save`). Teardown is exact: `cleanup`
removes everything that carries the prefix, even after a crashed run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from fogify_net.host.kernel import KernelError, run

log = logging.getLogger(__name__)

PREFIX = "fgts"
UNDERLAY = "10.99.0.0/24"
BASE_IMAGE = "fogify-net/base:latest"
SWARM_PORT = 2377
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class ClusterError(RuntimeError):
    """A daemon did not start or the cluster could not be built or removed."""


@dataclass
class Daemon:
    """One extra dockerd: its namespaces, paths and command line."""

    prefix: str
    index: int
    address: str  # on the underlay
    prefix_len: int = 24
    iptables: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """Network namespace, hostname, Swarm node hostname and cgroup parent."""
        return f"{self.prefix}{self.index}"

    @property
    def run_dir(self) -> Path:
        return Path(f"/run/{self.name}")

    @property
    def data_root(self) -> Path:
        return Path(f"/var/lib/{self.prefix}-docker{self.index}")

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "x"  # short: containerd's socket path must fit 108 bytes

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "dockerd.log"

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.name}"

    def argv(self) -> list[str]:
        """The command line: a new UTS namespace with our hostname, our netns, dockerd with our paths.

        `unshare` and `nsenter` exec (no fork), so the process we start is dockerd itself.
        """
        return [
            "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name,
            "nsenter", f"--net={self.netns_path}", "--",
            "dockerd",
            "--config-file", str(self.run_dir / "daemon.json"),  # not /etc/docker/daemon.json
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pid_file),
            "--host", self.url,
            "--cgroup-parent", f"/{self.name}",
            "--bridge", "none",  # no docker0: Swarm tasks use docker_gwbridge
            f"--iptables={str(self.iptables).lower()}",
            "--userland-proxy=false",
            "--shutdown-timeout", "2",
        ]

    def config(self) -> dict[str, str]:
        """daemon.json: only the trust key, which has no command-line flag in 20.10 and otherwise
        is /etc/docker/key.json, the main daemon's (both would report the same engine ID)."""
        return {"deprecated-key-path": str(self.run_dir / "key.json")}

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """The docker CLI against this daemon; stdout."""
        return run(["docker", "--host", self.url, *args], timeout=timeout, check=check)

    def client(self):  # -> docker.DockerClient (the SDK is imported lazily, like elsewhere)
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "daemon.json").write_text(json.dumps(self.config()) + "\n")
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log.info("started dockerd %s (pid %d) in netns %s", self.name, self.proc.pid, self.name)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ClusterError(f"dockerd {self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if self.socket.exists():
                try:
                    self.docker("version", "--format", "{{.Server.Version}}", timeout=10)
                    return
                except KernelError:
                    pass
            if time.monotonic() > deadline:
                raise ClusterError(f"dockerd {self.name} not ready after {timeout:g}s: {self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (dockerd stops its containers and containerd, unmounts), SIGKILL after `timeout`."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout, self.proc):
            log.warning("dockerd %s (pid %d) still runs %gs after SIGTERM; killing it", self.name, pid, timeout)
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5, self.proc)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        interesting = [line for line in text if "module=grpc" not in line]
        return "\n".join(interesting[-lines:])


class Cluster:
    """N daemons on an underlay, optionally a Swarm; a context manager that always tears down.

        with Cluster(2) as cluster:
            cluster.init_swarm()
            cluster.manager.docker("service", "create", ...)
    """

    def __init__(
        self,
        size: int,
        prefix: str = PREFIX,
        underlay: str = UNDERLAY,
        image: str | None = BASE_IMAGE,
        iptables: bool = False,
        image_archive: str | Path | None = None,
    ) -> None:
        """`image` is copied from the main daemon into every daemon, from `image_archive`
        (a `docker save` of it, see `save_image`) when given, so several clusters save it once."""
        if not re.fullmatch(r"[a-z]{2,6}", prefix):
            raise ValueError(f"prefix must be 2-6 lowercase letters, got {prefix!r}")
        network = IPv4Network(underlay)
        if not 1 <= size < min(network.num_addresses - 2, 100):
            raise ValueError(f"size must be 1..{min(network.num_addresses - 3, 99)}, got {size}")
        self.prefix = prefix
        self.underlay = network
        self.image = image
        self.image_archive = Path(image_archive) if image_archive else None
        self.daemons = [
            Daemon(prefix, n, str(network.network_address + n), network.prefixlen, iptables) for n in range(1, size + 1)
        ]
        self.swarm = False

    @property
    def manager(self) -> Daemon:
        return self.daemons[0]

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}ul"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br0"

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- bring-up ----------------------------------------------------------

    def start(self) -> None:
        """Underlay, daemons (started together), then the image in every daemon."""
        leftovers = cleanup(self.prefix)
        if leftovers:
            log.warning("removed leftovers of an earlier run: %s", "; ".join(leftovers))
        started = time.monotonic()
        self._underlay()
        for daemon in self.daemons:
            daemon.start()
        for daemon in self.daemons:
            daemon.wait_ready()
        log.info("%d daemons ready in %.1fs", len(self.daemons), time.monotonic() - started)
        if self.image:
            self.load_image(self.image, self.image_archive)

    def _underlay(self) -> None:
        sw = self.switch_netns
        run(["ip", "netns", "add", sw])
        run(["ip", "-n", sw, "link", "set", "lo", "up"])
        run(["ip", "-n", sw, "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "-n", sw, "link", "set", self.bridge, "up"])
        for d in self.daemons:
            port = f"{self.prefix}v{d.index}"
            run(["ip", "netns", "add", d.name])
            run(["ip", "-n", d.name, "link", "set", "lo", "up"])
            # Both ends are born in their namespaces: the root namespace never holds them.
            run(["ip", "link", "add", port, "netns", sw, "type", "veth", "peer", "name", "ul0", "netns", d.name])
            run(["ip", "-n", sw, "link", "set", port, "master", self.bridge, "up"])
            run(["ip", "-n", d.name, "addr", "add", f"{d.address}/{d.prefix_len}", "dev", "ul0"])
            run(["ip", "-n", d.name, "link", "set", "ul0", "up"])

    def load_image(self, image: str, archive: Path | None = None) -> None:
        """`docker load` into every daemon at once, from `archive` or from a `docker save` made now."""
        started = time.monotonic()
        tar = archive or Path(f"/tmp/{self.prefix}-image-{os.getpid()}.tar")
        try:
            if archive is None:
                save_image(image, tar)
            with ThreadPoolExecutor(max_workers=len(self.daemons)) as pool:
                for future in [pool.submit(d.docker, "load", "--input", str(tar), timeout=300) for d in self.daemons]:
                    future.result()
        finally:
            if archive is None:
                tar.unlink(missing_ok=True)
        log.info("loaded %s into %d daemons in %.1fs", image, len(self.daemons), time.monotonic() - started)

    def init_swarm(self, managers: int = 1, timeout: float = 60) -> dict[str, str]:
        """Init on the first daemon, join the others; returns {hostname: node id} once all are Ready."""
        m = self.manager
        m.docker("swarm", "init", "--advertise-addr", m.address, "--listen-addr", f"{m.address}:{SWARM_PORT}")
        self.swarm = True
        tokens = {role: m.docker("swarm", "join-token", "--quiet", role).strip() for role in ("worker", "manager")}
        for position, d in enumerate(self.daemons[1:], start=1):
            role = "manager" if position < managers else "worker"
            d.docker("swarm", "join", "--token", tokens[role], "--advertise-addr", d.address,
                     "--listen-addr", f"{d.address}:{SWARM_PORT}", f"{m.address}:{SWARM_PORT}")
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.nodes()
            if len(nodes) == len(self.daemons) and all(n["Status"] == "Ready" for n in nodes.values()):
                return {hostname: n["ID"] for hostname, n in nodes.items()}
            if time.monotonic() > deadline:
                raise ClusterError(f"swarm nodes not ready after {timeout:g}s: {nodes}")
            time.sleep(0.2)

    def nodes(self) -> dict[str, dict[str, str]]:
        """`docker node ls` on the manager, keyed by hostname."""
        out = self.manager.docker("node", "ls", "--format", "{{json .}}")
        return {n["Hostname"]: n for n in map(json.loads, out.splitlines())}

    # -- teardown ----------------------------------------------------------

    def teardown(self) -> list[str]:
        """Services, containers, swarm membership, daemons, then every prefixed resource.

        Every daemon is handled at once: containers are removed with SIGKILL
        (no stop grace period), and nodes leave the swarm together, since the
        whole swarm goes.
        """
        started = time.monotonic()
        live = [d for d in self.daemons if d.pid() is not None and d.socket.exists()]
        if self.swarm and self.manager in live:
            services = self.manager.docker("service", "ls", "--quiet", check=False, timeout=20).split()
            if services:
                self.manager.docker("service", "rm", *services, check=False, timeout=30)

        def leave(d: Daemon) -> None:
            containers = d.docker("ps", "--all", "--quiet", check=False, timeout=20).split()
            if containers:
                d.docker("rm", "--force", *containers, check=False, timeout=60)
            if self.swarm:
                d.docker("swarm", "leave", "--force", check=False, timeout=30)
            d.stop()

        if live:
            with ThreadPoolExecutor(max_workers=len(live)) as pool:
                list(pool.map(leave, live))
        self.swarm = False
        stopped = time.monotonic()
        removed = cleanup(self.prefix)
        log.info("daemons stopped in %.1fs, cleaned up in %.1fs", stopped - started, time.monotonic() - stopped)
        return removed


def save_image(image: str, path: str | Path) -> None:
    """`docker save` from the main daemon (read-only there: no lock needed)."""
    run(["docker", "save", "--output", str(path), image], timeout=300)


# -- exact cleanup by prefix ----------------------------------------------------


def _patterns(prefix: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    roots = re.compile(rf"^(/run/{prefix}\d+|/var/lib/{prefix}-docker\d+)(/|$)")
    netns = re.compile(rf"^{prefix}(\d+|ul)$")
    cgroup = re.compile(rf"^{prefix}\d+$")
    return roots, netns, cgroup


def cleanup(prefix: str = PREFIX) -> list[str]:
    """Remove every daemon, process, mount, cgroup, namespace and directory carrying `prefix`.

    Matches only our marks: paths /run/<prefix><n>/ and /var/lib/<prefix>-docker<n>
    (in a process's command line or a mount point), cgroups /<prefix><n>, and
    namespaces <prefix><n> and <prefix>ul. Returns what was removed.
    """
    roots, netns_re, cgroup_re = _patterns(prefix)
    removed: list[str] = []
    removed += _stop_processes(prefix)
    removed += _unmount(roots)
    removed += _remove_cgroups(cgroup_re)
    for name in _netns_names(netns_re):
        run(["ip", "netns", "del", name], check=False)
        removed.append(f"netns {name}")
    paths = _root_dirs(prefix)
    mounts = _mount_points()
    for path in paths:
        still = [m for m in mounts if m == str(path) or m.startswith(f"{path}/")]
        if still:  # never rm -rf through a mount
            raise ClusterError(f"{path} still has mounts, not removing it: {still[:5]}")
    # In parallel (a data root is ~150 MB of small files), and never across a file system boundary.
    removers = [subprocess.Popen(["rm", "-rf", "--one-file-system", str(path)]) for path in paths]
    for path, remover in zip(paths, removers):
        if remover.wait(timeout=300) != 0:
            raise ClusterError(f"rm -rf {path} failed")
        removed.append(f"directory {path}")
    for archive in _stale_archives(prefix):
        archive.unlink(missing_ok=True)
        removed.append(f"file {archive}")
    return removed


def leftovers(prefix: str = PREFIX) -> list[str]:
    """What `cleanup` would remove, plus root-namespace links named with the prefix; [] when clean."""
    roots, netns_re, cgroup_re = _patterns(prefix)
    found = [f"process {pid} {argv[:80]}" for pid, argv in _our_processes(prefix)]
    found += [f"mount {m}" for m in _mount_points() if roots.match(m)]
    found += [f"cgroup {c}" for c in _cgroup_dirs(cgroup_re)]
    found += [f"netns {n}" for n in _netns_names(netns_re)]
    found += [f"directory {p}" for p in _root_dirs(prefix)]
    found += [f"file {p}" for p in _stale_archives(prefix)]
    links = run(["ip", "-o", "link"], check=False)
    found += [f"link {name}" for name in re.findall(r"^\d+: ([^:@]+)", links, re.M) if name.startswith(prefix)]
    return found


DAEMON_PROGRAMS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy",
                   "docker-init", "unshare", "nsenter"}


def _our_processes(prefix: str) -> list[tuple[int, str]]:
    """Our daemons' programs whose command line names one of our roots (dockerd, containerd,
    shims), `fogify-net agent`s pointed at one of our daemons' sockets, every process in one
    of our cgroups (the containers'), and fogify-delayd helpers whose pid files lie under our
    run directories."""
    marker = re.compile(rf"(/run/{prefix}\d+/|/var/lib/{prefix}-docker\d+)")
    in_cgroup = re.compile(rf":/{prefix}\d+(/|$)", re.M)
    helpers = set()
    for pid_file in Path("/run").glob(f"{prefix}*/**/*.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            helpers.add(int(pid_file.read_text().split()[0]))
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
            cgroups = (proc / "cgroup").read_text()
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        argv = b" ".join(words).decode(errors="replace").strip()
        program = os.path.basename(words[0].decode(errors="replace")) if words else ""
        if (
            (program in DAEMON_PROGRAMS and marker.search(argv))
            or (marker.search(argv) and re.search(r"(fogify-net|fogify_net\.cli) agent ", argv))
            or in_cgroup.search(cgroups)
            or (int(proc.name) in helpers and comm == "fogify-delayd")
        ):
            found.append((int(proc.name), argv))
    return found


def _stop_processes(prefix: str) -> list[str]:
    """dockerd first with SIGTERM (it stops what it started), then SIGKILL for whatever is left."""
    removed = []
    daemons = [(pid, argv) for pid, argv in _our_processes(prefix) if re.search(r"(^|/)dockerd ", argv)]
    for pid, _argv in daemons:
        _signal(pid, signal.SIGTERM)
    for pid, argv in daemons:
        if not _wait_gone(pid, STOP_TIMEOUT_S):
            _signal(pid, signal.SIGKILL)
        removed.append(f"process {pid} {argv[:60]}")
    for _ in range(3):  # shims can outlive containerd; container processes outlive shims
        rest = _our_processes(prefix)
        if not rest:
            break
        for pid, argv in rest:
            _signal(pid, signal.SIGKILL)
            removed.append(f"process {pid} {argv[:60]}")
        for pid, _argv in rest:
            _wait_gone(pid, 5)
    return removed


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))  # \040 for spaces
    return points


def _unmount(roots: re.Pattern[str]) -> list[str]:
    removed = []
    for point in sorted({m for m in _mount_points() if roots.match(m)}, key=len, reverse=True):
        if subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30).returncode == 0:
            removed.append(f"mount {point}")
    return removed


def _cgroup_dirs(cgroup_re: re.Pattern[str]) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if not base.is_dir():
        return []
    found = []
    for controller in base.iterdir():
        try:
            found += [d for d in controller.iterdir() if d.is_dir() and cgroup_re.match(d.name)]
        except OSError:
            continue
    return found


def _remove_cgroups(cgroup_re: re.Pattern[str]) -> list[str]:
    removed = []
    for top in _cgroup_dirs(cgroup_re):
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            _rmdir(directory)
        if _rmdir(top):
            removed.append(f"cgroup {top}")
    return removed


def _rmdir(path: Path) -> bool:
    for _ in range(20):  # a cgroup is busy for a moment after its last process died
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.05)
    log.warning("cannot remove %s", path)
    return False


def _netns_names(netns_re: re.Pattern[str]) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if netns_re.match(n))
    except FileNotFoundError:
        return []


def _root_dirs(prefix: str) -> list[Path]:
    dirs = [p for p in Path("/run").glob(f"{prefix}*") if re.fullmatch(rf"{prefix}\d+", p.name)]
    dirs += [p for p in Path("/var/lib").glob(f"{prefix}-docker*") if re.fullmatch(rf"{prefix}-docker\d+", p.name)]
    return sorted(dirs)


def _stale_archives(prefix: str) -> list[Path]:
    """Image archives /tmp/<prefix>-image-<pid>.tar whose process is gone."""
    found = []
    for path in Path("/tmp").glob(f"{prefix}-image-*.tar"):
        match = re.fullmatch(rf"{prefix}-image-(\d+)\.tar", path.name)
        if match and not _alive(int(match[1])):
            found.append(path)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return True
        if not _alive(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


if __name__ == "__main__":  # scripts/test.sh: python -m tests.support.swarm_cluster (a crashed run's leftovers)
    for line in cleanup():
        print(f"removed {line}")
