"""`fogify-net run`: a Containernet or Mininet script's own imports give fogify-net's classes, in its process only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mininet.net")


def run(tmp_path, body: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "fogify_net.cli", "run", str(script), *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_the_scripts_imports_are_ours_and_its_arguments_and_exit_code_pass_through(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 'beside the script'\n")
    result = run(tmp_path, """
        import sys
        from mininet.net import Containernet, Mininet
        from mininet.node import Controller, Docker
        from mininet.topolib import TreeContainerNet
        import helper
        print(Containernet.__module__, Mininet is Containernet, Docker.__module__, TreeContainerNet.__module__)
        print(sys.argv[1:], helper.VALUE, __name__)
        sys.exit(3)
    """, "--fanout", "2")
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == [
        "fogify_net.containernet.net True fogify_net.containernet.net fogify_net.containernet.topolib",
        "['--fanout', '2'] beside the script __main__"]


def test_fogify_nets_own_backend_keeps_debians_mininet(tmp_path):
    """The emulation itself runs on Debian's Mininet: only the script's names are ours."""
    result = run(tmp_path, """
        import fogify_net.backends.local.manager as manager
        print(manager.Mininet.__module__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mininet.net"]


def test_other_processes_keep_debians_mininet():
    code = "import mininet.net; print(hasattr(mininet.net, 'Containernet'), mininet.net.Mininet.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["False", "mininet.net"]


def test_a_missing_script_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fogify_net.cli", "run", str(tmp_path / "nope.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "nope.py: no such script" in result.stderr


def test_an_exit_with_a_message_prints_it_and_fails(tmp_path):
    result = run(tmp_path, "import sys\nsys.exit('no room for that')\n")
    assert result.returncode == 1 and "no room for that" in result.stderr


def test_iperf_rates_come_from_the_received_and_sent_sums_of_either_iperf3_report():
    """iperf3 3.12 fills the UDP server's `sum` with zeros and its rate under `sum_received`; older
    versions give UDP's only under `sum` (a UDP iperf printed '0 bits/sec' for the server)."""
    import json

    from fogify_net.containernet.net import _iperf_rate

    newer = json.dumps({"end": {"sum": {"bits_per_second": 0}, "sum_received": {"bits_per_second": 5.02e6},
                                "sum_sent": {"bits_per_second": 5.03e6}}})
    older = json.dumps({"end": {"sum": {"bits_per_second": 4.9e6}}})
    assert [_iperf_rate(newer, "sum_received", None), _iperf_rate(newer, "sum_sent", "m")] == [
        "5.02 Mbits/sec", "5.03 Mbits/sec"]
    assert _iperf_rate(older, "sum_received", None) == "4.9 Mbits/sec"


def test_a_graphical_script_is_refused_before_it_runs(tmp_path):
    result = run(tmp_path, """
        print('ran')
        from tkinter import Tk
    """)
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("fogify-net: script.py: a graphical script (it imports Tk)")


def test_what_fogify_net_does_not_do_is_refused_early_saying_why(tmp_path):
    """Each refusal comes before anything is deployed (so without root), as the CLI prints it
    (`fogify-net: <what>: <why>`), for Mininet's low-level API, OpenFlow controllers, NAT, clusters over
    ssh, the machine's own namespace, a script's own Open vSwitch class, Open vSwitch's tools on a
    bridge, and more hosts than a deployment holds."""
    result = run(tmp_path, """
        from mininet.net import Mininet
        from mininet.node import Controller, Host, Node, OVSSwitch
        from mininet.examples.cluster import MininetCluster
        from mininet.topo import SingleSwitchTopo

        class Mover(OVSSwitch):
            def attach(self, intf):
                self.cmd('ovs-vsctl add-port', self, intf)

        def star():
            net = Mininet()
            net.addLink(net.addHost('h1'), net.addSwitch('s1'))
            return net

        attempts = {
            'low-level': lambda: Host('h1'),
            'controller': lambda: Controller('c0', port=6633),
            'controller host': lambda: Mininet().addHost('c1', cls=Controller),
            'nat': lambda: star().addNAT(),
            'cluster': lambda: MininetCluster(servers=['localhost', 'far']),
            'server': lambda: Mininet().addHost('h2', server='far'),
            'root namespace': lambda: Mininet().addHost('root', inNamespace=False),
            'root node': lambda: Node('root', inNamespace=False),
            'switch class': lambda: Mininet(topo=SingleSwitchTopo(2), switch=Mover),
            'ovs tools': lambda: star().get('s1').cmd('ovs-vsctl get Interface s1-eth1 ofport'),
            'size': lambda: Mininet(topo=SingleSwitchTopo(1001)).start(),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
                print(name, '| not refused')
            except Exception as error:
                print(name, '|', type(error).__name__, '|', error)
        MininetCluster(topo=SingleSwitchTopo(2))  # all on this machine: a network as any other
        print('local cluster | accepted')
    """)
    assert result.returncode == 0, result.stderr
    said = dict(line.split(" | ", 1) for line in result.stdout.splitlines())
    expected = {
        "low-level": "Host('h1'): the script makes nodes one by one with Mininet's low-level API",
        "controller": "Controller('c0'): the script runs an OpenFlow controller process itself",
        "controller host": "host class Controller: the host runs an OpenFlow controller",
        "nat": "NAT: a NAT node (addNAT, mininet.nodelib.NAT) routes the hosts to the outside world",
        "cluster": "MininetCluster: servers 'far': Mininet's cluster edition places nodes on other machines",
        "server": "node h2: placed on server 'far'",
        "root namespace": "node root: inNamespace=False puts the node in this machine's own network namespace",
        "root node": "Node('root'): a node in this machine's own network namespace (inNamespace=False)",
        "switch class": "switch s1: its class Mover is the script's own OVSSwitch",
        "ovs tools": "s1: ovs-vsctl get Interface s1-eth1 ofport: ovs-vsctl is Open vSwitch's",
        "size": "network: 1001 hosts: fogify-net deploys at most 1000",
    }
    for name, start in expected.items():
        assert said[name].startswith(f"Refused | {start}"), (name, said[name])
    assert said["local cluster"] == "accepted"


def test_an_iperf_udp_test_that_did_not_connect_is_told_apart():
    """Through a lossy link iperf3's one-datagram UDP handshake may be lost: such a report (no
    connected streams) is started again; a measured one is not."""
    import json

    from fogify_net.containernet.net import _iperf_unconnected

    lost = json.dumps({"start": {"connected": []}, "error": "unable to read from stream socket"})
    measured = json.dumps({"start": {"connected": [{"socket": 5}]}, "end": {"sum": {"bits_per_second": 5e6}}})
    assert _iperf_unconnected(lost) and _iperf_unconnected("") and not _iperf_unconnected(measured)
