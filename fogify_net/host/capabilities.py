"""What this machine can do, probed at run time, and the shaping mechanism that follows.

Mininet only logs an error when netem is missing and builds an undelayed
network. We probe first (in throwaway network namespaces, so the probes touch
nothing real), choose a mechanism, and say which one is in use.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

NETEM = "netem"  # rate, delay, jitter and loss in the kernel (HTB + netem)
USERSPACE = "userspace"  # rate in HTB, loss in nftables, delay in the fogify-delayd delay line
RATE_ONLY = "rate-only"  # only rates hold; delay and loss are reported as not applied
MECHANISMS = (NETEM, USERSPACE)
BRIDGE = "bridge"  # a Linux bridge per network (the default)
OVS = "ovs"  # an Open vSwitch bridge per network (Mininet's OVSSwitch)
SWITCHES = (BRIDGE, OVS)


def _ok(*argv: str) -> bool:
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _probe_netns(script: str) -> bool:
    """Run a shell snippet in a fresh, empty network namespace."""
    return _ok("unshare", "--net", "sh", "-c", script)


def delayd_binary() -> str | None:
    """The delay-line helper the driver would run, or None when it is not built."""
    from .delayline.driver import DelayLineError, find_binary

    try:
        return find_binary()
    except DelayLineError:
        return None


@dataclass(frozen=True)
class Capabilities:
    root: bool
    docker: bool
    mininet: bool
    htb: bool
    netem: bool
    nft_bridge: bool
    nfqueue: bool
    physdev: bool
    br_netfilter: bool
    ovs_kernel: bool
    delayd: str | None
    cgroup: str

    @property
    def userspace_shaping(self) -> bool:
        return self.nft_bridge and self.nfqueue and self.physdev and self.br_netfilter and bool(self.delayd)

    def mechanism(self, wanted: str = "auto") -> str:
        """The shaping mechanism to use; raise ValueError when a forced one cannot work here."""
        if wanted == NETEM:
            if not self.netem:
                raise ValueError("shaping 'netem' was asked for, but this kernel has no sch_netem")
            return NETEM
        if wanted == USERSPACE:
            if not self.userspace_shaping:
                raise ValueError("shaping 'userspace' was asked for, but " + "; ".join(self.userspace_missing()))
            return USERSPACE
        if wanted not in ("auto", "", None):
            raise ValueError(f"unknown shaping mechanism {wanted!r} (use auto, netem or userspace)")
        if self.netem:
            return NETEM
        return USERSPACE if self.userspace_shaping else RATE_ONLY

    def switch(self, wanted: str, mechanism: str) -> str:
        """The switch kind to use with `mechanism`; raise ValueError when it cannot work here.

        Open vSwitch's datapath takes a port's frames before bridge netfilter sees
        them, and the user-space mechanism lives there (loss in nftables on the
        bridges, delay through NFQUEUE on physdev matches): with it, OVS is refused.
        """
        if wanted in (BRIDGE, "", None):
            return BRIDGE
        if wanted != OVS:
            raise ValueError(f"unknown switch {wanted!r} (use bridge or ovs)")
        if mechanism == USERSPACE:
            raise ValueError("switch 'ovs' cannot work with the user-space shaping mechanism: it hooks bridge "
                             "netfilter (loss in nftables on the bridges, delay via NFQUEUE and physdev), which "
                             "Open vSwitch's datapath bypasses; use a kernel with sch_netem, or --switch bridge")
        if not self.ovs_kernel:
            raise ValueError("switch 'ovs' was asked for, but this kernel has no openvswitch module "
                             "(stock Debian and Ubuntu kernels have it); use --switch bridge")
        return OVS

    def userspace_missing(self) -> list[str]:
        missing = []
        if not self.nft_bridge:
            missing.append("nftables cannot filter on bridges")
        if not self.nfqueue:
            missing.append("iptables has no NFQUEUE target")
        if not self.physdev:
            missing.append("iptables has no physdev match")
        if not self.br_netfilter:
            missing.append("bridge netfilter (br_netfilter) is off")
        if not self.delayd:
            missing.append("the fogify-delayd helper is not built (run scripts/install.sh)")
        return missing

    def as_dict(self) -> dict:
        return asdict(self)


def probe() -> Capabilities:
    """Probe the machine; needs root for the namespace probes (reports False otherwise)."""
    root = os.geteuid() == 0
    return Capabilities(
        root=root,
        docker=_docker_alive(),
        mininet=_mininet(),
        htb=root and _probe_netns("tc qdisc add dev lo root handle 1: htb default 1"),
        netem=root and _probe_netns("tc qdisc add dev lo root netem delay 1ms"),
        nft_bridge=root and _probe_netns("nft add table bridge probe && nft add chain bridge probe c "
                                         "'{ type filter hook forward priority 0; }'"),
        nfqueue=root and _probe_netns("iptables -t mangle -A PREROUTING -j NFQUEUE --queue-num 1 --queue-bypass"),
        physdev=root and _probe_netns("iptables -t mangle -A POSTROUTING -m physdev --physdev-out x -j RETURN"),
        br_netfilter=Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists(),
        ovs_kernel=Path("/sys/module/openvswitch").exists(),
        delayd=delayd_binary(),
        cgroup="v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
    )


def _docker_alive() -> bool:
    try:
        from .containers import docker_client

        return bool(docker_client().ping())
    except Exception:  # any failure means: no usable Docker daemon
        return False


def _mininet() -> bool:
    try:
        import mininet.net  # noqa: F401

        return True
    except ImportError:
        return False
