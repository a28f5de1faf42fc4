"""The compose side of a model: services (image, environment, volumes, command, ...).

Strict where a typo would change the experiment, lenient with a warning for
compose keys that mean nothing in an emulation.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from .errors import ModelError, join, shown
from .fields import NAME, boolean, known_keys, mapping, optional_text, sequence, valid_name
from .ports import parse_ports
from .schema import PublishedPort, Service, Volume

SERVICE_KEYS_IGNORED = {
    "networks": "instances join the x-fogify networks of their blueprint",
    "deploy": "resources come from the x-fogify node profile",
    "depends_on": "all instances start together",
    "restart": "use the crash/restart actions",
    "container_name": "containers are named fogify_<label>.<n>, as Fogify's tasks",
    "hostname": "the hostname is <label>.<n>",
    "build": "the image must be built beforehand",
    "healthcheck": "not used by the emulation",
    "logging": "container logs stay with Docker",
    "expose": "instances are reachable on their emulated networks; `ports` publishes one on this machine",
    "stdin_open": "not used by the emulation",
    "tty": "not used by the emulation",
}


def parse_service(name: str, raw: Any, path: str, base_dir: Path | None, warnings: list[str]) -> Service:
    valid_name(name, path)
    raw = mapping(raw, path, "a service")
    for key, reason in SERVICE_KEYS_IGNORED.items():
        if key in raw and not (key == "build" and raw.get("image")):
            if key == "build":
                raise ModelError(join(path, "image"),
                                 "missing; build the image first (docker build -t NAME ...) and give its name")
            warnings.append(f"{join(path, key)}: ignored ({reason})")
    known = {"image", "environment", "volumes", "command", "entrypoint", "working_dir", "user", "labels",
             "cap_add", "privileged", "ports", "tmpfs", "security_opt"}
    for key in raw:
        if key not in known and key not in SERVICE_KEYS_IGNORED:
            warnings.append(f"{join(path, key)}: not supported, ignored")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ModelError(join(path, "image"), "missing (the Docker image to run)")
    volumes = tuple(
        _volume(v, join(join(path, "volumes"), i), base_dir)
        for i, v in enumerate(sequence(raw.get("volumes"), join(path, "volumes")))
    )
    cap_add = tuple(_scalar_text(c, join(join(path, "cap_add"), i))
                    for i, c in enumerate(sequence(raw.get("cap_add"), join(path, "cap_add"))))
    privileged = boolean(raw.get("privileged", False), join(path, "privileged"))
    ports = parse_ports(raw.get("ports"), join(path, "ports"))
    security_opt = tuple(_scalar_text(o, join(join(path, "security_opt"), i))
                         for i, o in enumerate(sequence(raw.get("security_opt"), join(path, "security_opt"))))
    return Service(
        name=name,
        image=image.strip(),
        environment=_environment(raw.get("environment"), join(path, "environment")),
        volumes=volumes,
        command=_command(raw.get("command"), join(path, "command")),
        entrypoint=_command(raw.get("entrypoint"), join(path, "entrypoint")),
        working_dir=optional_text(raw.get("working_dir"), join(path, "working_dir")),
        user=optional_text(raw.get("user"), join(path, "user")),
        labels=_environment(raw.get("labels"), join(path, "labels")),
        cap_add=cap_add,
        privileged=privileged,
        host_access=_host_access(raw, path, volumes, cap_add, privileged, ports, security_opt),
        ports=ports,
        tmpfs=_tmpfs(raw.get("tmpfs"), join(path, "tmpfs")),
        security_opt=security_opt,
    )


# Capabilities that act only inside the container's own namespaces (its network, its processes).
SAFE_CAPABILITIES = frozenset({"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "SYS_NICE", "IPC_LOCK"})
_HOST_NAMESPACES = ("pid", "network_mode", "ipc", "uts", "userns_mode", "cgroup")


def _host_access(raw: dict, path: str, volumes: tuple[Volume, ...], cap_add: tuple[str, ...],
                 privileged: bool, ports: tuple[PublishedPort, ...],
                 security_opt: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """What in a service reaches into the host (the API refuses it unless allowed): (field, why) pairs."""
    found = []
    wide = sorted({port.host_ip for port in ports if not ip_address(port.host_ip).is_loopback})
    if wide:  # the machine's network reaches an emulated app
        found.append((join(path, "ports"), f"publishes on {', '.join(wide)}, beyond this machine's loopback"))
    if privileged:
        found.append((join(path, "privileged"), "a privileged container owns the host"))
    for i, volume in enumerate(volumes):
        if volume.is_bind:
            found.append((join(join(path, "volumes"), i), f"bind-mounts the host's {volume.source}"))
    unsafe = sorted({c.upper().removeprefix("CAP_") for c in cap_add} - SAFE_CAPABILITIES)
    if unsafe:
        found.append((join(path, "cap_add"), f"capabilities beyond {', '.join(sorted(SAFE_CAPABILITIES))}: "
                                             f"{', '.join(unsafe)}"))
    for key in _HOST_NAMESPACES:
        if str(raw.get(key, "")).strip().lower() == "host":
            found.append((join(path, key), "shares a namespace with the host"))
    for key in ("devices", "device_cgroup_rules"):
        if raw.get(key):
            found.append((join(path, key), "gives access to the host's devices"))
    for i, option in enumerate(security_opt):
        if not CONFINING_OPTION.match(option):  # all but no-new-privileges lift a confinement
            found.append((join(join(path, "security_opt"), i), f"{shown(option)} lifts the container's confinement"))
    return tuple(found)


CONFINING_OPTION = re.compile(r"^no-new-privileges(?:[:=]true)?\Z")
# Docker's tmpfs mount options (mount(8), tmpfs(5)); anything else Docker refuses at start
TMPFS_FLAGS = frozenset({"ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async",
                         "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime",
                         "strictatime", "nostrictatime"})
TMPFS_VALUES = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})


def _tmpfs(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    """Compose's tmpfs: one `PATH[:OPTIONS]` or a list of them; OPTIONS as Docker's (`size=64m,mode=1777`)."""
    items = [(raw, path)] if isinstance(raw, str) else [
        (item, join(path, i)) for i, item in enumerate(sequence(raw, path))]
    mounts = []
    for item, where in items:
        target, _, options = _scalar_text(item, where).partition(":")
        if not target.startswith("/"):
            raise ModelError(where, f"expected an absolute path in the container, got {shown(target)}")
        for option in filter(None, options.split(",")):
            key, equals, _ = option.partition("=")
            if not (key in TMPFS_FLAGS and not equals or key in TMPFS_VALUES and equals):
                raise ModelError(where, f"unknown tmpfs option {shown(option)} (known: "
                                        f"{', '.join(sorted(TMPFS_VALUES))}=..., {', '.join(sorted(TMPFS_FLAGS))})")
            value = option.partition("=")[2]
            if key == "size" and not re.fullmatch(r"\d+[kmg]?", value, re.IGNORECASE):
                raise ModelError(where, f"tmpfs size {shown(value)}: expected bytes, or a number with k, m or g")
            if key == "mode" and not re.fullmatch(r"[0-7]{3,4}", value):
                raise ModelError(where, f"tmpfs mode {shown(value)}: expected octal permissions such as 1777")
        mounts.append((target, options))
    return tuple(mounts)


def _environment(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    """Compose environment: a mapping or a list of KEY=VALUE."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        pairs = [(_scalar_text(k, path), "" if v is None else _scalar_text(v, join(path, str(k)[:80])))
                 for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = []
        for i, item in enumerate(raw):
            if not isinstance(item, str) or "=" not in item:
                raise ModelError(join(path, i), f"expected KEY=VALUE, got {shown(item)}")
            key, value = item.split("=", 1)
            pairs.append((key, value))
    else:
        raise ModelError(path, f"expected a mapping or a list of KEY=VALUE, got {type(raw).__name__}")
    for i, (key, _) in enumerate(pairs):
        if not key or "=" in key:
            raise ModelError(join(path, i), f"invalid variable name {shown(key)}")
    return tuple(pairs)


def _scalar_text(value: Any, path: str) -> str:
    """A scalar as compose writes it into the container; a mapping or list is refused, never str()-ed
    (that would print, and send to Docker, whatever the value expands to)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ModelError(path, f"expected text or a number, got {type(value).__name__} {shown(value)}")


def _command(raw: Any, path: str) -> tuple[str, ...] | str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(isinstance(x, (str, int, float)) for x in raw):
        return tuple(str(x) for x in raw)
    raise ModelError(path, "expected a string or a list of strings")


def _volume(raw: Any, path: str, base_dir: Path | None) -> Volume:
    """Compose short ('src:dst[:ro]', '/anon') or long ({type, source, target, read_only}) syntax."""
    if isinstance(raw, dict):
        known_keys(raw, path, {"type", "source", "target", "read_only"})
        if not raw.get("target"):
            raise ModelError(join(path, "target"), "missing")
        source, target, read_only = str(raw.get("source") or ""), str(raw["target"]), bool(raw.get("read_only"))
    elif isinstance(raw, str):
        parts = raw.split(":")
        if len(parts) == 1:
            source, target, read_only = "", parts[0], False
        elif len(parts) in (2, 3):
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) == 3 else "rw"
            if mode not in ("ro", "rw"):
                raise ModelError(path, f"unknown volume mode {shown(mode)} (use ro or rw)")
            read_only = mode == "ro"
        else:
            raise ModelError(path, f"cannot read volume {shown(raw)} (write SOURCE:TARGET[:ro])")
    else:
        raise ModelError(path, f"expected a volume string or mapping, got {type(raw).__name__}")
    if not target.startswith("/"):
        raise ModelError(path, f"the target {shown(target)} must be an absolute path in the container")
    if source.startswith(("./", "../", "~")) or source in (".", ".."):
        if source.startswith("~"):
            source = str(Path(source).expanduser())
        elif base_dir is None:
            raise ModelError(path, f"relative path {shown(source)} needs the compose file's location")
        else:
            source = str((base_dir / source).resolve())
    elif source and not source.startswith("/") and not NAME.match(source):
        raise ModelError(path, f"invalid volume name {shown(source)}")
    return Volume(source=source, target=target, read_only=read_only)
