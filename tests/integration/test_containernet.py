"""Containernet and Mininet scripts run on fogify-net, shaped as declared: with their import line
changed, or unchanged through `fogify-net run`.

The scripts below are written in the idiom of Containernet's examples (containernet/containernet,
examples/containernet_example.py, containernet_example_cmd_field.py, containernet_volume_example.py,
containernet_topology_example.py, dockerhosts.py) and of Mininet's (mininet/mininet,
examples/linuxrouter.py, examples/linearbandwidth.py), not copied from them: each builds with
Containernet's API, starts, runs Mininet's CLI (fed on stdin, as a user types) and stops. The
test then checks what the CLI printed (RTTs, iperf rates, link down/up, files, routes) and that
nothing is left behind. Set FOGIFY_CONTAINERNET_EXAMPLES to a checkout of containernet/containernet
to run its examples themselves, unchanged, through `fogify-net run`.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import snapshot, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("machine")]

HEADER = """
from fogify_net.containernet import Containernet
from mininet.node import Controller
from mininet.cli import CLI
from mininet.link import TCLink
from mininet.log import info, setLogLevel
setLogLevel('info')
"""


FOGIFY_RUN = [sys.executable, "-m", "fogify_net.cli", "run"]  # `fogify-net run`, from this checkout


def run_script(tmp_path: Path, header: str, body: str, commands: str = "exit\n", timeout: float = 240,
               runner: tuple[str, ...] = (sys.executable,), expect_code: int = 0) -> str:
    """Run `header` + `body` as a user would (as root, its own process: `python script.py`, or `runner`
    script.py), the CLI reading `commands`; its output."""
    script = tmp_path / "script.py"
    script.write_text(header + textwrap.dedent(body))
    env = {**os.environ, "FOGIFY_URL": "http://127.0.0.1:5078", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([*runner, str(script)], input=commands, capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == expect_code, output[-3000:]
    return output


def ours(state: dict[str, set[str]]) -> dict[str, set[str]]:
    """What of a snapshot fogify-net made: other engineers' scratch interfaces may come and go meanwhile."""
    mark = ("fgn", "fogify", "mininet:")
    return {key: {line for line in lines if key == "containers" or any(m in line for m in mark)}
            for key, lines in state.items()}


def assert_clean(before: dict[str, set[str]]) -> None:
    """Nothing fogify-net made is left: containers, interfaces, rules, tables, shells."""
    before = ours(before)
    after = wait_until(lambda: (lambda s: s if s == before else None)(ours(snapshot())), timeout=5) or ours(snapshot())
    for key in before:
        assert after[key] == before[key], f"{key} left behind: {sorted(after[key] ^ before[key])}"


def rtts(output: str) -> list[float]:
    return [float(value) for value in re.findall(r"time=([\d.]+) ms", output)]


def iperf_mbits(output: str) -> float:
    server = re.findall(r"\*\*\* Results: \['([\d.]+) (M|K)bits/sec'", output)[-1]
    return float(server[0]) / (1000 if server[1] == "K" else 1)


def test_the_simplest_example_two_switches_and_a_shaped_cable(tmp_path):
    before = snapshot()
    output = run_script(tmp_path, HEADER, """
        net = Containernet(controller=Controller)
        net.addController('c0')
        d1 = net.addDocker('d1', ip='10.0.0.251', dimage="ubuntu:trusty")
        d2 = net.addDocker('d2', ip='10.0.0.252', dimage="ubuntu:trusty")
        s1 = net.addSwitch('s1')
        s2 = net.addSwitch('s2')
        net.addLink(d1, s1)
        net.addLink(s1, s2, cls=TCLink, delay='40ms', bw=5)
        net.addLink(s2, d2)
        net.start()
        net.ping([d1, d2])
        CLI(net)
        net.stop()
    """, "d1 ping -c 8 -i 0.2 d2\niperf d1 d2\nlink s1 s2 down\nd1 ping -c 1 -W 1 d2\nlink s1 s2 up\n"
         "d1 ping -c 2 -i 0.2 d2\nsh " + sys.executable + " -m fogify_net.cli status --url http://127.0.0.1:5078\n")
    assert "it runs fogify-net/base:latest instead" in output  # ubuntu:trusty is not here; no registry
    assert "*** Results: 0% dropped (2/2 received)" in output
    first = rtts(output)[:8]
    print(f"simplest example: RTT median {statistics.median(first):.2f} ms (declared 2 x 40 ms), "
          f"TCP {iperf_mbits(output):.2f} Mbit/s (declared 5)")
    assert 80 <= statistics.median(first) <= 80 * 1.02 + 1.5
    assert 0.88 * 5 <= iperf_mbits(output) <= 5.05
    assert "1 packets transmitted, 0 received" in output  # the cable was out
    assert len(rtts(output)) >= 8 + 2  # and in again
    assert "d1" in output and "status: running" in output  # the script's own API served the status
    assert_clean(before)


def test_an_unchanged_containernet_script_through_fogify_net_run(tmp_path):
    """Containernet's own imports (mininet.net's Containernet, mininet.node's Docker), Mininet's Topo,
    TCLink and autoStaticArp (done once the hosts exist), and the script's exit code, as `sudo python3
    script.py` gives them with Containernet."""
    before = snapshot()
    output = run_script(tmp_path, "", """
        import sys
        from mininet.net import Containernet
        from mininet.node import Controller, Docker
        from mininet.link import TCLink
        from mininet.topo import Topo
        from mininet.log import info, setLogLevel

        class Pair(Topo):
            def build(self, delay='15ms'):
                s1 = self.addSwitch('s1')
                for name in ('d1', 'd2'):
                    self.addHost(name, cls=Docker, dimage='ubuntu:trusty')
                    self.addLink(name, s1, cls=TCLink, delay=delay)

        setLogLevel('info')
        net = Containernet(topo=Pair(), controller=Controller, autoStaticArp=True)
        net.start()
        d1, d2 = net.get('d1', 'd2')
        info('neighbours of d1: %s\\n' % d1.cmd('ip neigh show %s' % d2.IP()).strip())
        info(d1.cmd('ping -c 6 -i 0.2 %s' % d2.IP()))
        lost = net.ping([d1, d2])
        net.stop()
        sys.exit(7 if lost == 0 else 1)
    """, runner=(*FOGIFY_RUN,), expect_code=7)
    median = statistics.median(rtts(output))
    print(f"unchanged script: RTT median {median:.2f} ms (declared 2 x 2 x 15)")
    assert re.search(r"neighbours of d1: [\d.]+ dev \S+ lladdr [0-9a-f:]{17} PERMANENT", output), output[-2000:]
    assert 60 <= median <= 60 * 1.02 + 1.5
    assert_clean(before)


def test_volumes_and_a_direct_link_between_containers(tmp_path):
    before = snapshot()
    shared = tmp_path / "vol1"
    output = run_script(tmp_path, HEADER, f"""
        net = Containernet(controller=Controller)
        net.addController('c0')
        d1 = net.addDocker('d1', volumes=["{shared}:/vol1"], ip='10.0.0.251', dimage="ubuntu:trusty")
        d2 = net.addDocker('d2', volumes=["{shared}:/vol1"], ip='10.0.0.252', dimage="ubuntu:trusty")
        s1 = net.addSwitch('s1')
        s2 = net.addSwitch('s2')
        net.addLink(d1, d2)
        net.addLink(s1, s2, cls=TCLink, delay='100ms', bw=1)
        net.addLink(s2, d2)
        net.start()
        net.ping([d1, d2])
        CLI(net)
        net.stop()
    """, "d1 sh -c 'echo from-d1 > /vol1/note'\nd2 cat /vol1/note\nnet\nd2 ip -br addr\n")
    assert "*** Results: 0% dropped (2/2 received)" in output
    assert "from-d1" in output and (shared / "note").read_text() == "from-d1\n"
    assert "d1 d1-eth0:d2-eth0" in output  # Mininet's `net` output: the direct link
    assert re.search(r"d2-eth1@\S+\s+UP\s*\n", output)  # d2-eth1 has no address, as in Containernet
    assert_clean(before)


def test_port_bindings_publish_a_containers_port_on_this_machine(tmp_path):
    """dockerhosts.py's idiom: port_bindings={container port: host port}; the script reaches the app
    from this machine while it runs, and the port is closed when it has stopped."""
    before = snapshot()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = run_script(tmp_path, HEADER, f"""
        import time, urllib.request
        net = Containernet(controller=Controller)
        d1 = net.addDocker('d1', ip='10.0.0.251', dimage="ubuntu:trusty", dcmd="python3 -m http.server 80",
                           ports=[80], port_bindings={{80: {port}}})
        d2 = net.addDocker('d2', ip='10.0.0.252', dimage="ubuntu:trusty")
        s1 = net.addSwitch('s1')
        net.addLink(d1, s1)
        net.addLink(d2, s1)
        net.start()
        for attempt in range(50):
            try:
                page = urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError as error:
                page = repr(error)
                time.sleep(0.2)
        print("FETCHED", "etc/" in page, page[:200])
        CLI(net)
        net.stop()
    """, f"sh {sys.executable} -m fogify_net.cli status --url http://127.0.0.1:5078\n")
    assert "FETCHED True" in output
    assert f"127.0.0.1:{port}->80" in output  # the status table's PUBLISHED column
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert_clean(before)


def test_the_command_field_of_an_image_runs_on_start(tmp_path):
    import io

    import docker

    client = docker.from_env()
    image = "fgt-cmdfield:latest"
    dockerfile = b'FROM fogify-net/base:latest\nCMD ["python3", "-m", "http.server", "8000"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=image, rm=True)
    before = snapshot()
    try:
        output = run_script(tmp_path, HEADER, f"""
            net = Containernet(controller=Controller)
            net.addController('c0')
            d1 = net.addDocker('d1', ip='10.0.0.251', dimage="ubuntu:trusty")
            d2 = net.addDocker('d2', ip='10.0.0.252', dimage="{image}")
            s1 = net.addSwitch('s1')
            s2 = net.addSwitch('s2')
            net.addLink(d1, s1)
            net.addLink(s1, s2, cls=TCLink, delay='10ms', bw=10)
            net.addLink(s2, d2)
            net.start()
            d2.start()
            CLI(net)
            net.stop()
        """, "d1 for i in $(seq 50); do python3 -c \"import urllib.request as u; "
             "print('status', u.urlopen('http://10.0.0.252:8000/').status)\" 2>/dev/null && break; sleep 0.2; done\n"
             "d2 ps -eo args\n")
        assert "status 200" in output and "python3 -m http.server 8000" in output
    finally:
        client.images.remove(image, force=True)
    assert_clean(before)


def test_a_containernet_tree_and_addDocker_after_start(tmp_path):
    before = snapshot()
    output = run_script(tmp_path, "", """
        from fogify_net.containernet import TreeContainerNet
        from mininet.cli import CLI
        from mininet.log import setLogLevel, info
        setLogLevel('info')
        network = TreeContainerNet(depth=2, fanout=2)
        network.start()
        network.pingAll()
        info('*** Dynamically add a container at runtime\\n')
        d5 = network.addDocker('d5', dimage="ubuntu:trusty", cpu_period=50000, cpu_quota=25000)
        network.addLink(d5, network.get('s3'), params1={"ip": "10.0.0.250/8"})
        network.ping([network.get('h1')], manualdestip="10.0.0.250")
        CLI(network)
        network.removeDocker('d5')
        network.ping([network.get('h1')], manualdestip="10.0.0.250")
        network.stop()
    """, "d5 cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us\n")
    assert "*** Results: 0% dropped (12/12 received)" in output
    assert "h1 -> 10.0.0.250 \n*** Results: 0% dropped (1/1 received)" in output
    assert re.search(r"50000\s+100000", output)  # cpu_quota/cpu_period = 0.5 CPUs, as a quota per 100 ms
    assert "h1 -> X \n*** Results: 100% dropped (0/1 received)" in output  # d5 is gone
    assert_clean(before)


def test_a_linux_router_joins_three_subnets(tmp_path):
    before = snapshot()
    output = run_script(tmp_path, "", """
        from mininet.topo import Topo
        from fogify_net.containernet import Mininet
        from mininet.node import Node
        from mininet.log import setLogLevel, info
        from mininet.cli import CLI

        class LinuxRouter(Node):
            def config(self, **params):
                super().config(**params)
                self.cmd('sysctl net.ipv4.ip_forward=1')

            def terminate(self):
                self.cmd('sysctl net.ipv4.ip_forward=0')
                super().terminate()

        class ThreeSubnets(Topo):
            def build(self, **_opts):
                router = self.addNode('r0', cls=LinuxRouter, ip='192.168.1.1/24')
                subnets = [('192.168.1.1/24', '192.168.1.100/24'), ('172.16.0.1/12', '172.16.0.100/12'),
                           ('10.0.0.1/8', '10.0.0.100/8')]
                for i, (gateway, address) in enumerate(subnets, 1):
                    switch = self.addSwitch('s%d' % i)
                    self.addLink(switch, router, intfName2='r0-eth%d' % i, params2={'ip': gateway})
                    host = self.addHost('h%d' % i, ip=address, defaultRoute='via ' + gateway.split('/')[0])
                    self.addLink(host, switch)

        setLogLevel('info')
        net = Mininet(topo=ThreeSubnets(), waitConnected=True)
        net.start()
        info(net['r0'].cmd('ip route'))
        CLI(net)
        net.stop()
    """, "pingall\nr0 cat /proc/sys/net/ipv4/ip_forward\nh1 cat /proc/sys/net/ipv4/ip_forward\n")
    assert "*** Results: 0% dropped (12/12 received)" in output
    assert "172.16.0.0/12 dev r0-eth2 proto kernel scope link src 172.16.0.1" in output
    assert "\n1\n0\n" in output  # the router forwards (r0's ip_forward), a host does not (h1's)
    assert_clean(before)


def test_bandwidth_and_delay_along_a_linear_chain_of_switches(tmp_path):
    before = snapshot()
    output = run_script(tmp_path, "", """
        from functools import partial
        from fogify_net.containernet import Mininet
        from mininet.node import OVSKernelSwitch, Controller
        from mininet.topo import Topo
        from mininet.link import TCLink
        from mininet.log import lg, info

        class LinearTestTopo(Topo):
            def build(self, N, **params):
                hosts = [self.addHost('h%s' % h) for h in range(1, N + 1)]
                switches = [self.addSwitch('s%s' % s) for s in range(1, N)]
                for a, b in zip(switches, switches[1:]):
                    self.addLink(a, b)
                self.addLink(hosts[0], switches[0])
                for host, switch in zip(hosts[1:], switches):
                    self.addLink(host, switch)

        lg.setLogLevel('info')
        link = partial(TCLink, delay='10ms', bw=10)
        net = Mininet(topo=LinearTestTopo(4), switch=OVSKernelSwitch, controller=Controller, link=link,
                      waitConnected=True)
        net.start()
        for n in (1, 3):
            info('pinging h1 -> h%d\\n' % (n + 1))
            info(net.hosts[0].cmd('ping -c 6 -i 0.2 %s' % net.hosts[n].IP()))
            serverbw, _clientbw = net.iperf([net.hosts[0], net.hosts[n]], seconds=4)
            info('iperf h1 -> h%d: %s\\n' % (n + 1, serverbw))
        net.stop()
    """)
    values = rtts(output)
    near, far = statistics.median(values[:6]), statistics.median(values[6:12])
    rates = [float(v) for v in re.findall(r"iperf h1 -> h\d: ([\d.]+) Mbits/sec", output)]
    print(f"linear chain: RTT h1-h2 {near:.2f} ms (declared 2 x 2 x 10), h1-h4 {far:.2f} ms (declared 2 x 4 x 10); "
          f"TCP {rates} Mbit/s (declared 10)")
    assert 40 <= near <= 40 * 1.02 + 1.5 and 80 <= far <= 80 * 1.02 + 2.5
    assert len(rates) == 2 and all(0.88 * 10 <= rate <= 10.1 for rate in rates)
    assert_clean(before)


UPSTREAM = {  # example -> (the import line it keeps, CLI input, what its output must hold)
    "containernet_example.py": ("from mininet.net import Containernet", "d1 ping -c 3 d2\n",
                                ["0% dropped (2/2 received)", "time=20"]),
    "containernet_volume_example.py": ("from mininet.net import Containernet", "", ["0% dropped"]),
    "containernet_example_cmd_field.py": ("from mininet.net import Containernet", "", ["Done"]),
    "containernet_topology_example.py": ("from mininet.topolib import TreeContainerNet", "pingall\n",
                                         ["0% dropped (72/72 received)"]),
    "dockerhosts.py": ("from mininet.net import Containernet", "d1 ping -c 2 d4\n",
                       ["2 received", "0% dropped (1/1 received)"]),
    "linuxrouter.py": ("from mininet.net import Mininet", "h1 ping -c 2 h3\nh2 ping -c 2 h3\n",
                       ["192.168.1.0     0.0.0.0", "ttl=63", "2 received"]),
    "linearbandwidth.py": ("from mininet.net import Mininet", "", ["*** Linear network results",
                                                                   "0% dropped (2/2 received)"]),
    "containernet_container_test.py": ("from mininet.net import Containernet", "",
                                       ["0% dropped (2/2 received)", "*** Done"]),
    "containernet_example_ipc.py": ("from mininet.net import Containernet", "", ["0% dropped (2/2 received)"]),
    "docker_cpuset.py": ("from mininet.net import Containernet", "", ["*** Done"]),  # its sendCmd before start
    "emptynet.py": ("from mininet.net import Mininet", "h1 ping -c 1 h2\n", ["1 received"]),
    "bind.py": ("from mininet.net import Mininet", "h1 sh -c 'echo h1 > /var/run/fgt-bind'\nh1 ls /var/run\n",
                ["Private Directories", "fgt-bind", "Done."]),
    "clusterSanity.py": ("from mininet.examples.cluster import MininetCluster", "pingall\n",
                         ["0% dropped (2/2 received)"]),
    "controllers2.py": ("from mininet.net import Mininet", "", ["0% dropped (12/12 received)"]),
    "intfoptions.py": ("from mininet.net import Mininet", "", ["(10Mbit/s)", "(unlimited 50% loss)",
                                                               "(unlimited 15ms)", "h1->h2: 1/1"]),
    "limit.py": ("from mininet.net import Mininet", "", ["Testing network 10.00 Mbps bandwidth limit",
                                                         "Testing CPU 10% bandwidth limit"]),
    "multiping.py": ("from mininet.net import Mininet", "", ["1 packets transmitted, 1 received",
                                                             "-> 10.0.0.200 1 packets transmitted, 0 received"]),
    "multipoll.py": ("from mininet.net import Mininet", "", ["h3: 64 bytes from 10.0.0.1"]),
    "multitest.py": ("from mininet.net import Mininet", "", ["0% dropped (12/12 received)", "h4-eth0: flags="]),
    "popen.py": ("from mininet.net import Mininet", "", ["<h5>: 64 bytes from 10.0.0.4"]),
    "popenpoll.py": ("from mininet.net import Mininet", "", ["<h3>: 64 bytes from 10.0.0.1"]),
    "simpleperf.py": ("from mininet.net import Mininet", "", ["Testing bandwidth between h1 and h4",
                                                              "*** Results: ['10M', '"]),
    "treeping64.py": ("from mininet.topolib import TreeNet", "", ["Open vSwitch kernel: 0% packet loss",
                                                                  "reference user: 0% packet loss"]),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_containernets_own_examples_run_unchanged(name, tmp_path):
    """Only where a checkout of containernet/containernet is given (CI is offline)."""
    checkout = os.environ.get("FOGIFY_CONTAINERNET_EXAMPLES")
    if not checkout:
        pytest.skip("set FOGIFY_CONTAINERNET_EXAMPLES to a checkout of containernet/containernet")
    kept, commands, expected = UPSTREAM[name]
    text = (Path(checkout) / "examples" / name).read_text()
    assert kept in text
    text = text.replace("fanout=100", "fanout=3").replace("/home/user/vol1", str(tmp_path))
    congestion = Path("/proc/sys/net/ipv4/tcp_congestion_control")
    was = congestion.read_text()  # linearbandwidth.py sets reno machine-wide
    before = snapshot()
    try:
        output = run_script(tmp_path, text, "", commands + "exit\n", timeout=600, runner=FOGIFY_RUN)
    finally:
        congestion.write_text(was)
    for piece in expected:
        assert piece in output, output[-2000:]
    if name == "linearbandwidth.py":  # 5 links of 30 ms each way between h1 and h5, 100 Mbit/s each
        assert re.search(r"4 \t\t[\d.]+ Mbits/sec", output), output[-1500:]
    if name == "intfoptions.py":  # h1's egress: 10 Mbit/s, then only 50% loss, then only 15 ms
        tcp, udp = (float(v) for v in re.findall(r"\*\*\* Results: \[(?:'10M', )?'([\d.]+) Mbits/sec'", output)[:2])
        delays = [float(v) for v in re.findall(r"rtt min/avg/max/mdev [\d.]+/([\d.]+)/", output)]
        print(f"intfoptions.py: TCP {tcp} Mbit/s (10), UDP received {udp} of 10 Mbit/s (50% loss), RTT {delays} (15)")
        assert 0.88 * 10 <= tcp <= 10.1 and 3.5 <= udp <= 6.5 and all(15 <= d <= 15 * 1.02 + 1.5 for d in delays)
    if name == "limit.py":  # each host's CPU share: 10% of the machine
        shares = [float(v) for line in re.findall(r"\*\*\* Results: \[([\d., ]+)\]", output)
                  for v in line.split(",")]
        print(f"limit.py: CPU shares {[round(v, 1) for v in shares]} (10%)")
        assert len(shares) == 20 and max(shares) <= 11.5 and statistics.median(shares) >= 8
    if name == "bind.py":
        assert not Path("/var/run/fgt-bind").exists()  # h1's /var/run was its own
    assert_clean(before)


def test_a_mininet_script_reshapes_polls_and_limits_its_hosts_while_running(tmp_path):
    """One network for Mininet's runtime idioms (of its intfoptions.py, limit.py, multiping.py,
    popenpoll.py, bind.py, treeping64.py, controllers2.py), written anew: a host class that configures
    itself in its constructor, privateDirs, CPULimitedHost and TCIntf given to the network with
    mininet.util.custom, build() called by the script (its hosts are up without start()), a TCLink's
    interfaces reconfigured while it runs (each config() replaces what the interface had), host shells
    polled with monitor(), popen'd processes with pmonitor, and runCpuLimitTest."""
    before = snapshot()
    private = tmp_path / "private"
    output = run_script(tmp_path, "", f"""
        import select, time
        from mininet.net import Mininet
        from mininet.node import CPULimitedHost, Host, Node
        from mininet.link import TCLink, TCIntf
        from mininet.topo import Topo
        from mininet.util import custom, pmonitor
        from mininet.log import info, setLogLevel

        class QuietHost(Host):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.cmd('sysctl -w net.ipv6.conf.all.disable_ipv6=1')

        class Star(Topo):
            def build(self):
                s1 = self.addSwitch('s1')
                self.addHost('h1')
                self.addHost('h2', cls=QuietHost, cpu=0.25)
                self.addHost('h3', privateDirs=[('/var/run', '{private}/%(name)s')])
                self.addLink('h1', s1, cls=TCLink)
                self.addLink('h2', s1)
                self.addLink('h3', s1)

        setLogLevel('info')
        net = Mininet(topo=Star(), host=custom(CPULimitedHost, cpu=0.25), intf=custom(TCIntf, bw=20), build=False)
        net.build()
        h1, h2, h3 = net.get('h1', 'h2', 'h3')
        info('ipv6 off in h2: %s\\n' % h2.cmd('cat /proc/sys/net/ipv6/conf/all/disable_ipv6').strip())
        h3.cmd('echo inside > /var/run/fgt-mark')
        info('private mark: %s\\n' % h3.cmd('cat /var/run/fgt-mark').strip())
        net.start()
        info('iperf h2 h3 %s\\n' % net.iperf([h2, h3], seconds=3)[0])
        link = net.linksBetween(h1, net.get('s1'))[0]
        link.intf1.config(delay='50ms')
        link.intf2.config(delay='50ms')
        info(h1.cmd('ping -c 5 -i 0.2 %s' % h2.IP()))
        link.intf1.config(bw=5)  # replaces h1's delay: its egress is 5 Mbit/s, undelayed
        info('iperf h1 h2 %s\\n' % net.iperf([h1, h2], seconds=3)[0])
        info(h1.cmd('ping -c 5 -i 0.2 %s' % h2.IP()))
        poller = select.poll()
        for host in (h2, h3):
            poller.register(host.stdout.fileno(), select.POLLIN)
            host.cmd('while true; do echo tick-%s; sleep 0.3; done &' % host.name)
        seen = {{}}
        end = time.time() + 2
        while time.time() < end:
            for fd, _ in poller.poll(500):
                node = Node.outToNode[fd]
                seen[node.name] = seen.get(node.name, 0) + node.monitor().count('tick-' + node.name)
        for host in (h2, h3):
            host.cmd('kill %while')
        info('monitored %s\\n' % sorted(seen.items()))
        popens = {{host: host.popen('ping -c 3 -i 0.2 %s' % h1.IP()) for host in (h2, h3)}}
        replies = sum(1 for host, line in pmonitor(popens, timeoutms=500) if host and 'bytes from' in line)
        info('pmonitor replies %d\\n' % replies)
        net.runCpuLimitTest(cpu=0.25, duration=3)
        net.stop()
    """, runner=(*FOGIFY_RUN,), timeout=300)
    assert "ipv6 off in h2: 1" in output  # the constructor's command ran once h2 was up
    assert "private mark: inside" in output and (private / "h3" / "fgt-mark").read_text() == "inside\n"
    assert not Path("/var/run/fgt-mark").exists()  # the machine's own /var/run is untouched
    first = [float(v) for v in re.findall(r"iperf h2 h3 ([\d.]+) Mbits/sec", output)]
    second = [float(v) for v in re.findall(r"iperf h1 h2 ([\d.]+) Mbits/sec", output)]
    values = rtts(output)
    delayed, halved = statistics.median(values[:5]), statistics.median(values[5:10])
    shares = [float(v) for v in re.findall(r"\*\*\* Results: \[([^\]]*)\]", output)[-1].split(",")]
    monitored = dict(re.findall(r"\('(h\d)', (\d+)\)", output.split("monitored ")[-1].splitlines()[0]))
    print(f"runtime idioms: TCIntf bw=20 {first} Mbit/s, config(delay=50ms) both ends RTT {delayed:.2f} ms, "
          f"then config(bw=5) one end {second} Mbit/s, RTT {halved:.2f} ms; CPU shares {shares} (25% each); "
          f"monitored {monitored}")
    assert len(first) == 1 and 0.88 * 20 <= first[0] <= 20.2
    assert 100 <= delayed <= 100 * 1.02 + 1.5
    assert len(second) == 1 and 0.88 * 5 <= second[0] <= 5.05
    assert 50 <= halved <= 50 * 1.02 + 1.5  # the switch port's 50 ms stayed, h1's own was replaced
    assert all(int(monitored.get(name, 0)) >= 3 for name in ("h2", "h3")), monitored
    assert "pmonitor replies 6" in output
    assert len(shares) == 9 and max(shares) <= 25 * 1.1 + 1 and statistics.median(shares) >= 15
    assert_clean(before)
