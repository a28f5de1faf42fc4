"""A service's `ports`: what an instance publishes on this machine, as compose writes it.

Instances have no Docker network (`network_mode: none`): a published port is
relayed by fogify-net (host/publish.py) into the instance's own loopback, so
the management path from this machine is not shaped. Choices, against Docker:

- TCP and UDP (host/udprelay.py: a flow per client, ended after a minute
  without datagrams); `sctp` is an error naming the entry.
- The host address defaults to 127.0.0.1, not Docker's 0.0.0.0: an emulated
  app is not put on the machine's network unless the file says so
  ("0.0.0.0:8080:80" is honoured).
- A fixed host port exists once: with several replicas it is published for
  the blueprint's first instance (`<label>.1`, or the single one) only, and a
  scale-out adds none (the model warns). A bare container port ("80", or
  "127.0.0.1::80") gets a free host port at deploy for every replica, new
  ones included; the status shows which.
- Ranges ("8080-8081:80-81") are as many entries; a host range for one
  container port ("8080-8090:80", Docker's "any of these") is refused.
- Two blueprints publishing one host port on overlapping addresses are an error
  naming both.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from .errors import ModelError, join, shown
from .fields import known_keys, sequence
from .schema import Blueprint, PublishedPort, Service

DEFAULT_HOST_IP = "127.0.0.1"
MAX_PORTS = 100  # published ports of one service, ranges expanded
LONG_KEYS = {"target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"}


def parse_ports(raw: Any, path: str) -> tuple[PublishedPort, ...]:
    """Compose's short ("[IP:][HOST:]CONTAINER[/tcp]") and long ({target, published, host_ip, protocol}) syntax."""
    ports: list[PublishedPort] = []
    for i, item in enumerate(sequence(raw, path)):
        where = join(path, i)
        if isinstance(item, dict):
            ports.append(_long(item, where))
        elif isinstance(item, (str, int)) and not isinstance(item, bool):
            ports += _short(str(item).strip(), where)
        else:
            raise ModelError(where, f"expected \"HOST:CONTAINER\" or a mapping {{target, published, host_ip}}, "
                                    f"got {type(item).__name__}")
        if len(ports) > MAX_PORTS:
            raise ModelError(path, f"more than {MAX_PORTS} published ports")
    seen: dict[tuple[str, int, str], str] = {}
    for port in ports:
        if port.published is not None:
            key = (port.host_ip, port.published, port.protocol)
            if key in seen:
                raise ModelError(path, f"host port {port.published}/{port.protocol} on {port.host_ip} "
                                       "is published twice")
            seen[key] = path
    return tuple(ports)


def _short(text: str, path: str) -> list[PublishedPort]:
    spec, _, protocol_text = text.partition("/")
    protocol = _protocol(protocol_text or "tcp", path)
    host_ip = DEFAULT_HOST_IP
    if spec.startswith("["):  # [IPv6]:HOST:CONTAINER
        address, bracket, rest = spec[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ModelError(path, f"cannot read {shown(text)} (write [IPv6]:HOST:CONTAINER)")
        host_ip, parts = _address(address, path), rest[1:].split(":")
        if len(parts) != 2:
            raise ModelError(path, f"cannot read {shown(text)} (write [IPv6]:HOST:CONTAINER)")
    else:
        parts = spec.split(":")
        if len(parts) == 3:
            host_ip, parts = _address(parts[0], path), parts[1:]
        elif len(parts) not in (1, 2):
            raise ModelError(path, f"cannot read {shown(text)} (write [IP:][HOST:]CONTAINER, e.g. 8080:80)")
    published_text, target_text = ("", parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    targets = _range(target_text, path, "container port")
    if not published_text:
        return [PublishedPort(target, None, host_ip, protocol) for target in targets]
    published = _range(published_text, path, "host port")
    if len(published) != len(targets):
        raise ModelError(path, f"{shown(text)}: the host range has {len(published)} ports and the container range "
                               f"{len(targets)}; a host range for one container port (Docker's 'any of these') "
                               "is not supported: give one host port")
    return [PublishedPort(target, host, host_ip, protocol) for host, target in zip(published, targets)]


def _long(raw: dict, path: str) -> PublishedPort:
    known_keys(raw, path, LONG_KEYS)
    if raw.get("target") is None:
        raise ModelError(join(path, "target"), "missing (the container's port)")
    target = _number(raw["target"], join(path, "target"), "container port")
    published = None
    if raw.get("published") not in (None, ""):
        published = _number(raw["published"], join(path, "published"), "host port")
    protocol = _protocol(str(raw.get("protocol") or "tcp"), join(path, "protocol"))
    host_ip = DEFAULT_HOST_IP
    if raw.get("host_ip") not in (None, ""):
        host_ip = _address(raw["host_ip"], join(path, "host_ip"))
    return PublishedPort(target, published, host_ip, protocol)


def _protocol(value: str, path: str) -> str:
    if value.lower() not in ("tcp", "udp"):
        raise ModelError(path, f"protocol {shown(value)} is not published: fogify-net relays TCP and UDP "
                               "(reach it on the emulated networks, or with `fogify-net exec`)")
    return value.lower()


def _address(value: Any, path: str) -> str:
    try:
        return str(ip_address(str(value).strip()))
    except ValueError:
        raise ModelError(path, f"host address {shown(value)} is not an IP address (e.g. 127.0.0.1, 0.0.0.0)") from None


def _range(text: str, path: str, what: str) -> list[int]:
    first, dash, last = text.partition("-")
    low = _number(first, path, what)
    high = _number(last, path, what) if dash else low
    if high < low:
        raise ModelError(path, f"{what} range {shown(text)} runs backwards")
    if high - low >= MAX_PORTS:
        raise ModelError(path, f"{what} range {shown(text)} has more than {MAX_PORTS} ports")
    return list(range(low, high + 1))


def _number(value: Any, path: str, what: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ModelError(path, f"{what} {shown(value)} is not a port number (1-65535)")
    return int(text)


def check_port_clashes(services: dict[str, Service], blueprints: tuple[Blueprint, ...]) -> list[str]:
    """Refuse one fixed host port published twice (two blueprints, or one service that two blueprints run);
    warn where replicas beyond the first get none. Returns the warnings."""
    warnings: list[str] = []
    taken: list[tuple[PublishedPort, str, str]] = []  # (port, its field, its blueprint)
    for blueprint in blueprints:
        service = services[blueprint.service]
        for k, port in enumerate(service.ports):
            if port.published is None:
                continue
            where = join(join(join("services", service.name), "ports"), k)
            for other, other_where, other_label in taken:
                if (other.published == port.published and other.protocol == port.protocol
                        and _overlap(other.host_ip, port.host_ip)):
                    same = other_where == where
                    raise ModelError(where, (
                        f"blueprints {other_label} and {blueprint.label} both run service {service.name}, whose "
                        f"host port {port.published} can be published once (give one of them a service of its own)"
                        if same else f"host port {port.published}/{port.protocol} is also published by {other_where} "
                                     f"(blueprint {other_label})"))
            taken.append((port, where, blueprint.label))
            if blueprint.replicas > 1:
                warnings.append(f"{where}: host port {port.published} is published for {blueprint.label}.1 only "
                                f"({blueprint.replicas} replicas; a bare container port gives each replica one)")
    return warnings


def _overlap(a: str, b: str) -> bool:
    """Two listening addresses clash on one port when equal or when either is a wildcard (0.0.0.0, ::)."""
    return a == b or ip_address(a).is_unspecified or ip_address(b).is_unspecified
