"""Tables for people: the deploy/status table of the CLI."""

from __future__ import annotations

from .model.units import format_rate, format_size

MECHANISMS = {
    "netem": "netem: rate (HTB), delay, jitter and loss in the kernel",
    "userspace": "userspace: rate in HTB, loss in nftables on the receive path, delay in the fogify-delayd delay line",
    "rate-only": "rate-only: rates hold; delay, jitter and loss are NOT applied on this machine "
                 "(see fogify-net doctor)",
}


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def status_table(report: dict) -> str:
    """One row per instance and network: addresses, limits, the shaping in effect and its fidelity."""
    rows = []
    placement = report.get("shaping", {}).get("placement")  # Swarm backend: instance -> Swarm node
    judged = "fidelity" in report  # servers before the fidelity monitor have no marks
    published = any(instance.get("ports") for instance in report.get("instances", []))
    for instance in report.get("instances", []):
        first = True
        for network, attachment in instance["networks"].items() or [("-", {})]:
            mark = instance.get("fidelity", "-") if first else ""
            if attachment.get("fidelity") == "degraded":
                mark = f"{mark} (link degraded)".strip()
            rows.append([
                instance["name"] if first else "",
                *([placement.get(instance["name"], "-") if first else ""] if placement is not None else []),
                instance["node"] if first else "",
                f"{instance['cpus']:g}" if first else "",
                format_size(instance["memory"]) if first else "",
                network,
                attachment.get("ip", "-"),
                attachment.get("uplink", "-") + ("" if attachment.get("up", True) else " (link down)"),
                attachment.get("downlink", "-"),
                *([mark] if judged else []),
                *([_ports(instance.get("ports", [])) if first else ""] if published else []),
            ])
            first = False
    shaping = report.get("shaping", {})
    parts = [f"status: {report['status']}" + (f" ({report['message']})" if report.get("message") else "")]
    parts.append(f"shaping: {MECHANISMS.get(shaping.get('mechanism'), shaping.get('mechanism'))}")
    if judged:
        parts.append(f"fidelity: {report['fidelity']}" + (" (see GET /fidelity/ for the episodes)"
                                                           if report["fidelity"] == "degraded" else ""))
        parts += [f"  - {reason}" for reason in report.get("fidelity_reasons", [])]
    for missing in shaping.get("not_applied", []):
        parts.append(f"  not applied: {missing}")
    if rows:
        host = ["HOST"] if placement is not None else []
        fidelity = ["FIDELITY"] if judged else []
        ports = ["PUBLISHED"] if published else []
        parts.append(table(["INSTANCE", *host, "NODE", "CPUS", "MEMORY", "NETWORK", "IP", "UPLINK", "DOWNLINK",
                            *fidelity, *ports], rows))
    traces = report.get("traces") or []
    if traces:
        parts.append(table(["TRACE", "APPLIES TO", "STATE", "AT", "VALUES", "STEPS", "LATE p95"],
                           [[t["name"], t["target"], t["state"],
                             "-" if t.get("position_s") is None else f"{t['position_s']:.1f}s",
                             _values(t.get("values")),
                             str(t.get("steps", 0)),
                             "-" if t["lateness_ms"]["p95"] is None else f"{t['lateness_ms']['p95']:.1f}ms"]
                            for t in traces]))
    for warning in report.get("warnings", []):
        parts.append(f"warning: {warning}")
    return "\n".join(parts)


def _values(values: dict | None) -> str:
    """A trace's current values for people: '2Mbit/s 30ms ±2ms 1% loss'."""
    if not values:
        return "-"
    parts = []
    if "bandwidth_bps" in values:
        parts.append(format_rate(values["bandwidth_bps"]))
    if "delay_ms" in values:
        parts.append(f"{values['delay_ms']:g}ms")
    if "jitter_ms" in values:
        parts.append(f"±{values['jitter_ms']:g}ms")
    if "loss_pct" in values:
        parts.append(f"{values['loss_pct']:g}% loss")
    return " ".join(parts)


def _ports(ports: list[dict]) -> str:
    """An instance's published ports: '127.0.0.1:8080->80, [::1]:8443->443'; '*' for a port not bound yet."""
    texts = []
    for port in ports:
        host = f"[{port['host_ip']}]" if ":" in port["host_ip"] else port["host_ip"]
        texts.append(f"{host}:{port['published'] if port.get('published') is not None else '*'}->{port['target']}")
    return ", ".join(texts) or "-"
