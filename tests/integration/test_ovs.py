"""Open vSwitch switches (`--switch ovs`): rates, delays, isolation, partitions, a remote controller, cleanup,
chains of switches joined by shaped cables, and packet-level monitoring on the switch ports.

These need the openvswitch module and netem (OVS is refused with the user-space
mechanism): they run in the stock-kernel VM (scripts/vm.sh test) and are skipped,
with the reason, on kernels without them.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fogify_net.compile.flows import Flow
from fogify_net.host.capabilities import NETEM, OVS, probe
from fogify_net.host.kernel import run
from fogify_net.host.ovs import our_bridges, unusable
from fogify_net.model import ModelBuilder

from .conftest import BASE_IMAGE, assert_clean, emulation, iperf, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

# The emulated CPU of the VM without KVM (FOGIFY_NET_EMULATED_CPU=1) brings a round trip back up to
# ~5 ms late (test_shaping.py says why).
LATE_MS = 5.0 if os.environ.get("FOGIFY_NET_EMULATED_CPU") == "1" else 0.0
GOODPUT = 1448 / 1514  # TCP payload per Ethernet frame


@pytest.fixture
def ovs(machine):
    caps = probe()
    try:
        caps.switch(OVS, caps.mechanism(NETEM))
    except ValueError as why:
        pytest.skip(str(why))
    why = unusable(caps.ovs_kernel)
    if why:
        pytest.skip(why)


def model(**networks: dict) -> ModelBuilder:
    m = ModelBuilder()
    m.service("app", image=BASE_IMAGE, command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=2000, memory="256M")
    for name, qos in networks.items():
        m.network(name, **qos)
    return m


def vsctl(*args: str) -> str:
    return run(["ovs-vsctl", "--timeout=10", *args]).strip()


def pings(host, address: str, count: int = 20) -> list[float]:
    out = host.cmd(f"ping -n -c {count} -i 0.05 -W 2 {address}")
    return [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]


def test_rates_and_delays_hold_on_open_vswitch_bridges(ovs):
    m = model(lan={"bidirectional": {"bandwidth": "10Mbps", "latency": {"delay": "20ms"}}})
    m.blueprint("n", node="box", service="app", networks=["lan"], replicas=2)
    before = snapshot()
    with emulation(m.build(), shaping=NETEM, switch=OVS) as emu:
        bridge = emu.plan.networks["lan"].bridge
        assert bridge in our_bridges()
        assert vsctl("get", "bridge", bridge, "fail_mode") == "standalone"
        ports = {i.port for instance in emu.plan.instances for i in instance.interfaces}
        assert set(vsctl("list-ports", bridge).split()) == ports
        assert "openvswitch" in run(["ip", "-d", "link", "show", next(iter(ports))])  # an OVS port, no bridge's
        a, b = emu.hosts["n.1"], emu.hosts["n.2"]
        address = emu.plan.instance("n.2").interface("lan").ip
        # A flow's first packets go up to ovs-vswitchd (an upcall) until it installs a datapath
        # flow; under emulation that took tens of ms (a first run: mean 58.5 ms for 40 declared).
        # Switching the first packets is OVS's, not the shaping's: warm up, then judge the median.
        pings(a, str(address), 5)
        rtts = pings(a, str(address), 40)
        assert len(rtts) >= 38
        median = statistics.median(rtts)
        assert -1.8 <= median - 40 <= 1.8 + LATE_MS, f"median RTT {median:.2f} ms, expected 40 (2 x 20 ms): {rtts}"
        # 10 Mbit/s each way (bidirectional splits delay, not rate): TCP goodput within 10%
        goodput = iperf(a, b, str(address), seconds=5)
        assert 0.9 * 10 * GOODPUT <= goodput <= 1.05 * 10 * GOODPUT, f"{goodput:.2f} Mbit/s for 10 Mbit/s"
    assert_clean(before)


def test_networks_are_isolated_and_a_partition_filters_on_the_ports(ovs):
    m = model(a={"bidirectional": {"bandwidth": "100Mbps"}}, b={"bidirectional": {"bandwidth": "100Mbps"}})
    m.blueprint("x", node="box", service="app", networks=["a"])
    m.blueprint("y", node="box", service="app", networks=["b"])
    m.blueprint("z", node="box", service="app", networks=["a", "b"])
    m.blueprint("w", node="box", service="app", networks=["a"])
    with emulation(m.build(), shaping=NETEM, switch=OVS) as emu:
        x, z = emu.hosts["x.1"], emu.hosts["z.1"]
        y_b = str(emu.plan.instance("y.1").interface("b").ip)
        assert pings(z, y_b, 3), "z, on both networks, reaches y on b"
        assert pings(x, str(emu.plan.instance("z.1").interface("a").ip), 3), "x reaches z on a"
        # x claims b's subnet on its own link: it ARPs for y on network a's switch, where y is not
        x.cmd(f"ip route add {emu.plan.networks['b'].subnet} dev eth0")
        assert pings(x, y_b, 5) == [], "a frame crossed from network a's switch to network b's"
        # a partition between x and w on a: filtered where their frames enter the switch
        w_a = str(emu.plan.instance("w.1").interface("a").ip)
        assert pings(x, w_a, 3)
        emu.plan.partitions = {("x", "w", None)}
        emu.reshape()
        assert "hook ingress" in run(["nft", "list", "table", "netdev", "fogify_net"])
        x_a = str(emu.plan.instance("x.1").interface("a").ip)
        assert pings(x, w_a, 5) == [] and pings(emu.hosts["w.1"], x_a, 5) == []
        assert pings(x, str(emu.plan.instance("z.1").interface("a").ip), 3), "the partition cut x from z too"
        emu.plan.partitions = set()
        emu.reshape()
        assert pings(x, w_a, 3), "healed, x reaches w again"


def test_a_chain_of_open_vswitch_bridges_adds_up_its_cables_delays_and_keeps_the_narrowest_rate(ovs):
    """test_multihop's chain h1 - s1 = s2 = s3 - h2 on OVS: each cable a veth pair between two bridges,
    shaped as between Linux bridges; unplugged, nothing crosses; plugged again, the path is back."""
    from fogify_net.actions.runner import ActionRunner
    from fogify_net.compile.paths import trace
    from fogify_net.model.actions import parse_action

    from .test_multihop import chain_of_switches

    before = snapshot()
    with emulation(chain_of_switches().build(), shaping=NETEM, switch=OVS) as emu:
        plan = emu.plan
        h1, h2 = plan.instance("h1"), plan.instance("h2")
        cables = {port for link in plan.switch_links() for port in (link.source_port, link.target_port)}
        for switch, bridge in plan.networks["lan"].switches.items():
            ports = set(vsctl("list-ports", bridge).split())
            assert ports & cables, f"{switch} ({bridge}) has no cable: {ports}"
        there, back = trace(plan, h1, h2.interface("lan").ip), trace(plan, h2, h1.interface("lan").ip)
        expected = 1000 * (there.delay + back.delay)  # 2 + 10 + 15 + 3 there, 2 + 5 + 10 + 3 back
        assert expected == pytest.approx(50)
        target = str(h2.interface("lan").ip)
        pings(emu.hosts["h1"], target, 5)  # OVS's first packets of a flow go up to ovs-vswitchd: warm up
        rtts = pings(emu.hosts["h1"], target, 30)
        assert len(rtts) >= 28
        median = statistics.median(rtts)
        print(f"chain of 3 OVS bridges: RTT median {median:.2f} ms, declared sum {expected:.0f} ms")
        assert expected <= median <= expected * 1.02 + 1.5 + LATE_MS, rtts
        # the narrowest rate is the s2->s3 cable's 8 Mbit/s
        goodput = iperf(emu.hosts["h1"], emu.hosts["h2"], target, seconds=4)
        print(f"  TCP h1->h2 {goodput:.2f} Mbit/s (narrowest 8)")
        assert 0.88 * 8 <= goodput <= 8.1, f"{goodput:.2f} Mbit/s through a chain whose narrowest cable is 8"
        runner = ActionRunner(emu)
        runner.run(parse_action("link_down", {"switches": ["s2", "s3"]}))
        assert pings(emu.hosts["h1"], target, 3) == [], "a frame crossed an unplugged cable"
        runner.run(parse_action("link_up", {"switches": ["s2", "s3"]}))
        assert len(pings(emu.hosts["h1"], target, 5)) >= 4, "plugged again, the path is not back"
    assert_clean(before)


def test_packet_level_monitoring_counts_flows_on_the_ports_and_a_restart_keeps_counting_and_filtering(ovs):
    """Flows counted where frames enter an OVS bridge from an instance (a netdev ingress chain per port),
    each echo once. An instance's restart makes a new veth, and the kernel drops the old one's hooks:
    its flows are counted again (the set's counts kept) and the partition filters its port again."""
    m = model(lan={"bidirectional": {"bandwidth": "50Mbps"}, "packet_level_monitoring": True},
              quiet={"bidirectional": {"bandwidth": "50Mbps"}})
    m.blueprint("a", node="box", service="app", networks=["lan", "quiet"])
    m.blueprint("b", node="box", service="app", networks=["lan", "quiet"])
    m.blueprint("c", node="box", service="app", networks=["lan"])
    before = snapshot()
    with emulation(m.build(), shaping=NETEM, switch=OVS) as emu:
        assert "hook ingress" in run(["nft", "list", "table", "netdev", "fogify_net_flows"])
        a, b, c = (emu.plan.instance(name) for name in ("a.1", "b.1", "c.1"))
        a_ip, b_ip, c_ip = (i.interface("lan").ip for i in (a, b, c))
        emu.plan.partitions = {("a", "c", None)}
        emu.reshape()

        def echoes() -> tuple[int, int]:
            flows = emu.flow_counters()
            counts = [flows.get(Flow(src, dst, "icmp", 0, 0), (0, 0)) for src, dst in ((a_ip, b_ip), (b_ip, a_ip))]
            return sum(n for n, _ in counts), sum(size for _, size in counts)

        assert len(pings(emu.hosts["a.1"], str(b_ip), 5)) == 5
        assert len(pings(emu.hosts["a.1"], str(b.interface("quiet").ip), 5)) == 5  # not monitored
        assert echoes() == (10, 10 * 84), emu.flow_counters()  # 20 bytes of IP, 8 of ICMP, 56 of data
        assert all(f.src in emu.plan.networks["lan"].subnet for f in emu.flow_counters())

        emu.crash([a])
        emu.restart([a])
        assert len(pings(emu.hosts["a.1"], str(b_ip), 5)) == 5
        assert echoes() == (20, 20 * 84), f"a's new port is not counted, or the counts were lost: {echoes()}"
        # a -> c must stop at a's new port: c never sees a request, so it never answers (its answers
        # would be counted where they enter the switch even though c's port filter drops them)
        assert pings(emu.hosts["a.1"], str(c_ip), 3) == []
        assert Flow(c_ip, a_ip, "icmp", 0, 0) not in emu.flow_counters(), "a's new port did not filter"
    assert_clean(before)


def test_with_a_remote_controller_the_switches_obey_it(ovs):
    """fail_mode secure: the controller decides; with none answering at the address, nothing is forwarded."""
    m = model(lan={"bidirectional": {"bandwidth": "100Mbps"}})
    m.blueprint("n", node="box", service="app", networks=["lan"], replicas=2)
    with emulation(m.build(), shaping=NETEM, switch=OVS, ovs_controller="127.0.0.1:6699") as emu:
        bridge = emu.plan.networks["lan"].bridge
        assert vsctl("get-controller", bridge) == "tcp:127.0.0.1:6699"
        assert vsctl("get", "bridge", bridge, "fail_mode") == "secure"
        assert pings(emu.hosts["n.1"], str(emu.plan.instance("n.2").interface("lan").ip), 3) == []


def test_the_user_space_mechanism_refuses_open_vswitch():
    from fogify_net.backends.local import LocalBackend
    from fogify_net.compile.plan import compile_model
    from fogify_net.compile.resources import HostFacts

    caps = probe()
    if not caps.userspace_shaping:
        pytest.skip("this machine has no user-space shaping: " + "; ".join(caps.userspace_missing()))
    m = model(lan={"bidirectional": {"bandwidth": "10Mbps"}})
    m.blueprint("n", node="box", service="app", networks=["lan"])
    plan = compile_model(m.build(), HostFacts(cpu_mhz=2000, cpus=2, memory=2**34))
    with pytest.raises(ValueError, match="bridge netfilter"):
        LocalBackend(plan, shaping="userspace", switch=OVS)


CRASH = """
import sys, time
sys.path[:0] = {path!r}
from tests.integration.test_ovs import model
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.backends.local import LocalBackend
m = model(lan={{"bidirectional": {{"bandwidth": "10Mbps"}}}})
m.blueprint("n", node="box", service="app", networks=["lan"], replicas=2)
emu = LocalBackend(compile_model(m.build(), HostFacts(2000, 2, 2**34)), shaping="netem", switch="ovs",
                   run_dir="/run/fogify-net")
emu.deploy()
print("up", flush=True)
time.sleep(600)
"""


def test_cleanup_removes_the_bridges_a_crashed_process_left(ovs):
    from fogify_net.host.cleanup import cleanup

    before = snapshot()
    root = str(Path(__file__).parents[2])
    child = subprocess.Popen([sys.executable, "-c", CRASH.format(path=[root])], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "up"
        assert our_bridges(), "the crashed process's bridge is in the OVS database"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    removed = cleanup("/run/fogify-net")
    assert any(line.startswith("Open vSwitch bridge fgn-") for line in removed), removed
    assert_clean(before)
