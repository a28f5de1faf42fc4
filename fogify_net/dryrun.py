"""`fogify-net deploy --dry-run`: the plan and the exact commands, without touching the machine."""

from __future__ import annotations

import os

from .compile.flows import flow_ruleset
from .compile.links import bridge_commands, container_commands, veth_commands
from .compile.netfilter import delay_slots, iptables_delay_rules, nft_ruleset
from .compile.plan import compile_model
from .compile.shaping import plan_shaping
from .compile.tc import direction_commands
from .host.facts import read_host_facts
from .model import load_model
from .model.units import format_size
from .render import MECHANISMS, table

QUEUE_BASE = 20000


def dry_run(path: str, shaping: str = "auto") -> str:
    model = load_model(path)
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
          " ".join(f"{x.name}={x.cidr}@{x.network}(port {x.port})" for x in i.interfaces)] for i in plan.instances],
    ))
    networks = [[n.name, n.bridge, str(n.subnet)] for n in plan.networks.values()]
    out.append(table(["NETWORK", "BRIDGE", "SUBNET"], networks))
    if model.traces:
        out.append(table(["TRACE", "APPLIES TO", "DIRECTION", "SOURCE", "MODE", "STEP", "PASS", "STARTS"],
                         [[t.name, t.target.describe(), t.spec.direction, t.spec.trace.source, t.spec.trace.mode,
                           f"{t.spec.trace.resolution * 1000:g}ms",
                           f"{t.spec.trace.duration:g}s" + (" loop" if t.spec.trace.loop else " once"),
                           "with the deployment" if t.spec.autostart else "by action"] for t in model.traces]))
    pids = {i.name: f"<pid of {i.container}>" for i in plan.instances}
    bridges = {name: n.bridge for name, n in plan.networks.items()}
    out.append("\n# ip -batch (root namespace)")
    out += [line for n in plan.networks.values() for line in bridge_commands(n.bridge, n.name)]
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
        if lines:
            out.append(f"\n# tc -batch in {s.instance}'s namespace: uplink on {s.device} ({s.network})")
            out += lines
        root += direction_commands(port, None, s.downlink, subnet, "src", kernel_delay)
    out.append("\n# tc -batch (root namespace): downlinks on the switch ports")
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


def _mechanism(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if os.geteuid() != 0:
        return "userspace"  # the probes need root; show what a machine without netem would do
    from .host.capabilities import probe

    return probe().mechanism()
