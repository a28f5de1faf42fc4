"""`fogify-net deploy --dry-run`: the plan and the exact commands, without touching the machine."""

from __future__ import annotations

import os

from .compile.flows import flow_ruleset
from .compile.links import bridge_commands, container_commands, switch_bridges, switch_link_commands, veth_commands
from .compile.netfilter import delay_slots, iptables_delay_rules, nft_ruleset
from .compile.paths import end_to_end
from .compile.plan import Plan, compile_model
from .compile.shaping import plan_shaping
from .compile.tc import direction_commands
from .host.facts import read_host_facts
from .model import Model, load_model
from .model.units import format_duration, format_rate, format_size
from .render import MECHANISMS, table

QUEUE_BASE = 20000


def dry_run(path: str, shaping: str = "auto", model: Model | None = None) -> str:
    """The dry-run text of the model in `path` (or of `model`, built from a Python topology)."""
    model = model or load_model(path)
    host = read_host_facts()
    plan = compile_model(model, host)
    mechanism = _mechanism(shaping)
    kernel_delay = mechanism == "netem"
    out = [f"# {len(plan.instances)} instances on {len(plan.networks)} networks; host clock {host.cpu_mhz:g} MHz",
           f"# shaping: {MECHANISMS[mechanism]}"]
    out += [f"# warning: {w}" for w in (*model.warnings, *plan.warnings)]
    out.append(table(
        ["INSTANCE", "CONTAINER", "NODE", "CPUS", "MEMORY", "INTERFACES"],
        [[i.name, i.container, i.node.name, f"{i.cpus:g}", format_size(i.memory),
          " ".join(f"{x.name}={x.cidr or 'unnumbered'}@{x.network}"
                   + (f"/{x.switch}" if x.switch != x.network else "") + f"(port {x.port})" for x in i.interfaces)
          + "".join(f"; route {r.describe()}" for r in i.routes) + ("; forwards" if i.forwarding else "")
          + "".join(f"; publishes {p.describe()}" for p in i.ports)]
         for i in plan.instances],
    ))
    networks = [[n.name, " ".join(f"{s}={b}" if s != n.name else b for s, b in n.switches.items()), str(n.subnet)]
                for n in plan.networks.values()]
    out.append(table(["NETWORK", "SWITCHES (BRIDGES)", "SUBNET"], networks))
    links = plan.switch_links()
    if links:
        out.append(table(["SWITCH LINK", "NETWORK", "PORTS", "FORWARD", "BACKWARD"],
                         [[link.name, link.network, f"{link.source_port} {link.target_port}",
                           link.forward.describe(), link.backward.describe()] for link in links]))
    out.append(paths_table(plan))
    if model.traces:
        out.append(table(["TRACE", "APPLIES TO", "DIRECTION", "SOURCE", "MODE", "STEP", "PASS", "STARTS"],
                         [[t.name, t.target.describe(), t.spec.direction, t.spec.trace.source, t.spec.trace.mode,
                           f"{t.spec.trace.resolution * 1000:g}ms",
                           f"{t.spec.trace.duration:g}s" + (" loop" if t.spec.trace.loop else " once"),
                           "with the deployment" if t.spec.autostart else "by action"] for t in model.traces]))
    pids = {i.name: f"<pid of {i.container}>" for i in plan.instances}
    bridges = switch_bridges(plan)
    out.append("\n# ip -batch (root namespace)")
    out += [line for n in plan.networks.values() for s, b in n.switches.items() for line in bridge_commands(b, n.name)]
    out += [line for link in links for line in switch_link_commands(link, bridges)]
    out += [line for i in plan.instances for line in veth_commands(i, pids[i.name], bridges)]
    for instance in plan.instances:
        netns = f"nsenter --net=/proc/{pids[instance.name]}/ns/net"
        out.append(f"\n# ip -batch in {instance.container}'s network namespace ({netns})")
        out += container_commands(instance)
    shaping_state = plan_shaping(plan)
    root = []
    for port, s in shaping_state.items():
        subnet = plan.networks[s.network].subnet
        lines = direction_commands(s.device, None, s.uplink, subnet, "dst", kernel_delay)
        if s.root:
            root += lines
        elif lines:
            out.append(f"\n# tc -batch in {s.instance}'s namespace: uplink on {s.device} ({s.network})")
            out += lines
        root += direction_commands(port, None, s.downlink, subnet, "src", kernel_delay)
    out.append("\n# tc -batch (root namespace): downlinks on the switch ports, switch links both ways")
    out += root
    out.append("\n# nft -f -")
    out.append(nft_ruleset(plan, shaping_state, loss=mechanism == "userspace").rstrip())
    flows = flow_ruleset(plan)
    if flows is not None:
        out.append("\n# nft -f - (packet-level monitoring)")
        out.append(flows.rstrip())
    if mechanism == "userspace":
        slots = delay_slots(shaping_state)
        queues, numbers = {}, iter(range(QUEUE_BASE, QUEUE_BASE + len(slots)))
        for slot, qos in slots.items():
            queues[slot] = None if qos is None else next(numbers)
        out.append("\n# fogify-delayd queues (queue: delay jitter)")
        out += [f"set {queues[slot]} {qos.describe()}" for slot, qos in slots.items() if qos is not None]
        out.append("\n# iptables-restore --noflush")
        out.append(iptables_delay_rules(queues).rstrip())
    return "\n".join(out)


def paths_table(plan: Plan, limit: int = 60) -> str:
    """End to end between the labels (first replicas; routers left out): one-way delay and jitter
    summed over the hops, the narrowest rate, the loss, the round trip, and the routers on the way.
    Pairs without a path (no shared network, no route) are counted, not listed."""
    pairs, total = end_to_end(plan, limit)
    rows, unreachable = [], []
    for there, back in pairs:
        if there.error:
            unreachable.append(f"{there.source} -> {there.target}: {there.error}")
            continue
        rtt = "-" if back is None or back.error else format_duration(there.delay + back.delay)
        rows.append([
            there.source, there.target, str(len([h for h in there.hops if not h.what.endswith("(forwards)")])),
            format_duration(there.delay) + (f"±{format_duration(there.jitter)}" if there.jitter else ""),
            format_rate(there.rate) if there.rate else "unlimited", f"{there.loss:.3g}%", rtt,
            ", ".join(there.routers) or "-",
        ])
    text = "\n# paths (one way: delays add up, the narrowest rate holds; RTT = there and back)\n"
    text += table(["FROM", "TO", "LINKS", "DELAY", "RATE", "LOSS", "RTT", "VIA"], rows)
    if unreachable:
        text += f"\n# {len(unreachable)} pairs have no path, e.g. " + "; ".join(unreachable[:3])
    if total > len(pairs):
        text += f"\n# ... and {total - len(pairs)} more pairs"
    return text


def _mechanism(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if os.geteuid() != 0:
        return "userspace"  # the probes need root; show what a machine without netem would do
    from .host.capabilities import probe

    return probe().mechanism()
