"""A Containernet/Mininet script's topology as a fogify-net model, without root: what start() would deploy.

Written in the idiom of Containernet's examples (containernet/containernet, examples/
containernet_example.py and friends; Mininet's examples/linuxrouter.py), not copied from them.
"""

from __future__ import annotations

import textwrap
from functools import partial
from pathlib import Path

import pytest
from mininet.link import TCLink
from mininet.node import Controller, Node
from mininet.topo import Topo

from fogify_net.compile.paths import trace
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.containernet import Containernet, Docker, Mininet, TreeContainerNet
from fogify_net.containernet.load import load_topology, parse_params
from fogify_net.model import ModelError, QoS, parse_model

ROOT = Path(__file__).parents[2]
HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)


def plan_of(net):
    document, warnings = net.document()
    return compile_model(parse_model(document), HOST), warnings


def two_switches(**link) -> Containernet:
    net = Containernet(controller=Controller)
    net.addController("c0")
    d1 = net.addDocker("d1", ip="10.0.0.251", dimage="fogify-net/base:latest")
    d2 = net.addDocker("d2", ip="10.0.0.252", dimage="fogify-net/base:latest")
    s1, s2 = net.addSwitch("s1"), net.addSwitch("s2")
    net.addLink(d1, s1)
    net.addLink(s1, s2, **link)
    net.addLink(s2, d2)
    return net


def test_the_simplest_example_becomes_one_segment_of_two_switches_with_a_shaped_cable():
    plan, _ = plan_of(two_switches(cls=TCLink, delay="100ms", bw=1))
    lan = plan.networks["s1"]
    assert lan.switches == {"s1": "fgn-s1", "s2": "fgn-s2"} and str(lan.subnet) == "10.0.0.0/8"
    cable = lan.switch_links[0]
    assert cable.forward == cable.backward == QoS(rate=1_000_000, delay=0.1)  # TCLink: each end's egress, whole
    d1, d2 = plan.instance("d1"), plan.instance("d2")
    assert d1.interface("s1").name == "d1-eth0" and d1.interface("s1").cidr == "10.0.0.251/8"
    assert (d1.interface("s1").switch, d2.interface("s1").switch) == ("s1", "s2")
    path = trace(plan, d1, d2.interface("s1").ip)
    assert path.delay == pytest.approx(0.1) and path.rate == 1_000_000


def test_link_parameters_shape_only_a_tclink_as_in_mininet():
    plan, warnings = plan_of(two_switches(delay="100ms", bw=1))
    assert plan.networks["s1"].switch_links[0].forward == QoS()
    assert any("ignored, as in Mininet" in w for w in warnings)
    net = Containernet(link=partial(TCLink, delay="7ms"))  # a TCLink default, as linearbandwidth.py gives one
    h1, s1 = net.addHost("h1"), net.addSwitch("s1")
    net.addLink(h1, s1)
    plan, _ = plan_of(net)
    interface = plan.instance("h1").interface("s1")
    assert interface.uplink == interface.downlink == QoS(delay=0.007)


def test_params1_and_params2_shape_their_own_ends_and_the_common_values_win_as_in_mininet():
    net = Containernet()
    h1, s1 = net.addHost("h1"), net.addSwitch("s1")
    net.addLink(h1, s1, cls=TCLink, params1={"bw": 5, "loss": 2}, params2={"bw": 20}, delay="3ms",
                max_queue_size=50)
    net.addLink(net.addHost("h2"), s1, cls=TCLink, bw=8, params1={"bw": 4})
    plan, _ = plan_of(net)
    h1_lan = plan.instance("h1").interface("s1")
    assert h1_lan.uplink == QoS(rate=5_000_000, delay=0.003, loss=2.0, queue=50)  # h1's egress
    assert h1_lan.downlink == QoS(rate=20_000_000, delay=0.003, queue=50)  # the switch port's egress
    assert plan.instance("h2").interface("s1").uplink.rate == 8_000_000


def test_addresses_follow_mininet_first_interface_gets_ip_others_need_params():
    net = Mininet()
    h1, h2 = net.addHost("h1"), net.addHost("h2")  # Mininet's automatic 10.0.0.1/8, 10.0.0.2/8
    s1, s2 = net.addSwitch("s1"), net.addSwitch("s2")
    net.addLink(h1, s1)
    net.addLink(h2, s1)
    net.addLink(h2, s2, params1={"ip": "11.0.0.2/8"})
    net.addLink(h1, s2, intfName1="h1-wan")
    plan, _ = plan_of(net)
    h1_ = plan.instance("h1")
    assert [(i.name, i.cidr) for i in h1_.interfaces] == [("h1-eth0", "10.0.0.1/8"), ("h1-wan", None)]
    assert plan.instance("h2").interface("s2").cidr == "11.0.0.2/8"
    assert str(plan.networks["s2"].subnet) == "11.0.0.0/8"


def test_a_host_to_host_link_is_a_network_of_its_own_and_an_empty_segment_gets_a_free_subnet():
    net = Containernet()
    d1 = net.addDocker("d1", ip="10.0.0.251", dimage="fogify-net/base:latest")
    d2 = net.addDocker("d2", ip="10.0.0.252", dimage="fogify-net/base:latest")
    s1, s2 = net.addSwitch("s1"), net.addSwitch("s2")
    net.addLink(d1, d2)
    net.addLink(s1, s2, cls=TCLink, delay="100ms")
    net.addLink(s2, d2)
    plan, _ = plan_of(net)
    assert plan.instance("d2").interface("d1-d2").cidr == "10.0.0.252/8"
    assert plan.instance("d2").interface("s1").ip is None  # d2-eth1 has no ip, as in Mininet
    assert str(plan.networks["s1"].subnet) == "192.168.255.0/24"


def test_default_routes_make_their_gateways_routers():
    class LinuxRouter(Node):
        def config(self, **params):
            super().config(**params)
            self.cmd("sysctl net.ipv4.ip_forward=1")

    class ThreeSubnets(Topo):
        def build(self):
            router = self.addNode("r0", cls=LinuxRouter, ip="192.168.1.1/24")
            for i, (subnet, gateway) in enumerate((("192.168.1.100/24", "192.168.1.1/24"),
                                                   ("172.16.0.100/12", "172.16.0.1/12")), 1):
                switch = self.addSwitch(f"s{i}")
                self.addLink(switch, router, intfName2=f"r0-eth{i}", params2={"ip": gateway})
                host = self.addHost(f"h{i}", ip=subnet, defaultRoute=f"via {gateway.split('/')[0]}")
                self.addLink(host, switch)

    net = Mininet(topo=ThreeSubnets())
    assert type(net["r0"]).__name__ == "LinuxRouter" and isinstance(net["r0"], LinuxRouter)
    plan, _ = plan_of(net)
    r0 = plan.instance("r0")
    assert r0.forwarding and [i.name for i in r0.interfaces] == ["r0-eth1", "r0-eth2"]
    assert [r.describe() for r in plan.instance("h1").routes] == ["default via 192.168.1.1"]
    path = trace(plan, plan.instance("h1"), plan.instance("h2").interface("s2").ip)
    assert path.error is None and path.routers == ["r0"]


def test_docker_options_become_the_service_and_node_profile():
    net = Containernet()
    net.addDocker("d1", dimage="ubuntu:trusty", dcmd="python3 -m http.server", environment={"A": 1},
                  volumes=["/srv/data:/data:ro"], cpu_period=50000, cpu_quota=25000, cpu_shares=20, mem_limit="256m",
                  cpuset_cpus="0", ports=[9999], port_bindings={9999: 9999})
    document, warnings = net.document()
    assert document["services"]["d1"]["command"] == "python3 -m http.server"
    plan = compile_model(parse_model(document), HOST)
    d1 = plan.instance("d1")
    assert d1.cpus == 0.5 and d1.memory == 256 * 2**20 and d1.node.cpu_shares == 20 and d1.node.cpuset == "0"
    assert d1.service.environment == (("A", "1"),) and d1.service.volumes[0].read_only
    assert dict(d1.service.labels)["fogify-net.shell"] == "exec" and d1.service.entrypoint == ()
    assert [p.describe() for p in d1.ports] == ["127.0.0.1:9999->9999"]
    assert not any("port" in w for w in warnings)


def test_port_bindings_and_ports_are_published_ports():
    """Docker's port_bindings forms and `ports` (on free host ports, Containernet's publish_all_ports default)."""
    net = Containernet()
    net.addDocker("d1", port_bindings={80: 8080, "443/tcp": ("0.0.0.0", 8443), 22: ("127.0.0.2",), 81: [8081, 8082]},
                  ports=[80, 5000])
    net.addDocker("d2", ports=[6000], publish_all_ports=False)
    plan, _ = plan_of(net)
    assert [p.describe() for p in plan.instance("d1").ports] == [
        "127.0.0.1:8080->80", "0.0.0.0:8443->443", "127.0.0.2:*->22", "127.0.0.1:8081->81", "127.0.0.1:8082->81",
        "127.0.0.1:*->5000"]
    assert plan.instance("d2").ports == []
    net = Containernet()
    net.addDocker("d1", port_bindings={"53/udp": 5353})
    assert [p.describe() for p in plan_of(net)[0].instance("d1").ports] == ["127.0.0.1:5353->53/udp"]
    net = Containernet()
    net.addDocker("d1", port_bindings={"9/sctp": 9})
    with pytest.raises(ModelError, match=r"services\.d1\.ports\[0\]\.protocol: protocol 'sctp' is not published"):
        plan_of(net)


def test_an_image_this_machine_lacks_runs_as_the_base_image_with_a_warning():
    from fogify_net.containernet.translate import NodeSpec, document

    doc, warnings = document([NodeSpec("d1", "docker", {"dimage": "ubuntu:trusty"})], [],
                             image_exists=lambda image: False)
    assert doc["services"]["d1"]["image"] == "fogify-net/base:latest"
    assert warnings == ["d1: image 'ubuntu:trusty' is not on this machine and there is no registry; "
                        "it runs fogify-net/base:latest instead"]


def test_a_containernet_tree_is_one_segment_with_mininet_names():
    plan, _ = plan_of(TreeContainerNet(depth=2, fanout=3, dimage="fogify-net/base:latest"))
    assert [i.name for i in plan.instances] == [f"h{n}" for n in range(1, 10)]
    assert list(plan.networks) == ["s1"] and list(plan.networks["s1"].switches) == ["s1", "s2", "s3", "s4"]
    assert plan.instance("h9").interface("s1").cidr == "10.0.0.9/8"


def test_what_fogify_net_cannot_emulate_is_refused_naming_the_part():
    net = Containernet()
    s1, s2, s3 = (net.addSwitch(n) for n in ("s1", "s2", "s3"))
    net.addLink(s1, s2)
    net.addLink(s2, s3)
    net.addLink(s3, s1)
    with pytest.raises(ModelError, match="link s3-s1: closes a loop"):
        net.document()
    net = Containernet()
    h1, s1 = net.addHost("h1"), net.addSwitch("s1")
    net.addLink(h1, s1)
    net.addLink(h1, s1)
    with pytest.raises(ModelError, match="h1-eth0 and h1-eth1 both lead into segment s1"):
        net.document()
    net = Containernet()
    s1 = net.addSwitch("s1")
    net.addLink(net.addHost("h1", ip="10.0.0.1/8"), s1)
    net.addLink(net.addHost("h2", ip="11.0.0.1/8"), s1)
    with pytest.raises(ModelError, match="addresses in 10.0.0.0/8 and 11.0.0.0/8 on one segment"):
        net.document()


def test_a_topology_file_gives_build_topos_or_one_topo_class(tmp_path):
    files = {
        "build.py": """
            from fogify_net.model import ModelBuilder
            def build(params):
                m = ModelBuilder()
                m.service("app", image="fogify-net/base:latest")
                m.node("n")
                m.network("lan")
                m.blueprint("x", node="n", service="app", networks=["lan"], replicas=params.get("n", 1))
                return m
        """,
        "topos.py": """
            from mininet.topo import Topo
            class A(Topo):
                def build(self, k=1):
                    s = self.addSwitch("s1")
                    for i in range(k):
                        self.addLink(self.addHost(f"a{i}"), s)
            topos = {"a": A, "b": lambda: A(k=5)}
        """,
        "one.py": """
            from mininet.topo import Topo, LinearTopo   # an imported Topo does not count
            class Mine(Topo):
                def build(self, hosts=2):
                    s = self.addSwitch("s1")
                    for i in range(hosts):
                        self.addLink(self.addHost(f"h{i}"), s)
        """,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    assert load_topology(tmp_path / "build.py", {"n": 3})[0]["x-fogify"]["topology"][0]["replicas"] == 3
    assert len(load_topology(tmp_path / "topos.py", {"topo": "b"})[0]["services"]) == 5
    assert len(load_topology(tmp_path / "topos.py", {"topo": "a", "k": 2})[0]["services"]) == 2
    assert len(load_topology(tmp_path / "one.py", parse_params(["hosts=4"]))[0]["services"]) == 4
    with pytest.raises(ModelError, match="pick one of the file's topos: a, b"):
        load_topology(tmp_path / "topos.py", {})
    with pytest.raises(ModelError, match=r"--param: Mine: .*unexpected keyword argument 'fanout'"):
        load_topology(tmp_path / "one.py", {"fanout": 2})
    assert parse_params(["a=3", "b=true", "c=10Mbps", "d="]) == {"a": 3, "b": True, "c": "10Mbps", "d": ""}


EXPECTED = {  # topology file -> (params, a pair and its one-way delay in ms, and the narrowest rate)
    "three-tier-fog.yaml": ({}, ("sensor-1.1", "edge-1.1"), 5, 10_000_000),
    "city.py": ({"regions": 2}, ("cars-2.1", "cloud.1"), 40, 10_000_000),
    "tree.py": ({"depth": 3, "fanout": 2}, ("h1", "h8"), 6, 100_000_000),
    "router-chain.py": ({"routers": 4}, ("ha-1", "hb-1"), 2 * 1 + 3 * 10, 20_000_000),
    "linear.py": ({"k": 4, "switch_bw": 10}, ("h1", "h4"), 5 * 2, 10_000_000),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_ready_topology_compiles_and_its_paths_add_up_as_documented(name):
    params, (source, target), delay_ms, rate = EXPECTED[name]
    path = ROOT / "topologies" / name
    if path.suffix == ".py":
        document, _ = load_topology(path, params)
        model = parse_model(document)
    else:
        from fogify_net.model import load_model

        model = load_model(path)
    plan = compile_model(model, HOST)
    a, b = plan.instance(source), plan.instance(target)
    from fogify_net.compile.paths import reachable_address

    there = trace(plan, a, reachable_address(plan, a, b))
    assert there.error is None and there.delay * 1000 == pytest.approx(delay_ms) and there.rate == rate
    assert (ROOT / "topologies" / "README.md").read_text().count(f"`{name}`") == 1


def test_docker_is_containernets_class_and_topos_may_use_it():
    class T(Topo):
        def build(self):
            self.addLink(self.addHost("d1", cls=Docker, dimage="fogify-net/base:latest"), self.addSwitch("s1"))

    document, _ = Containernet(topo=T()).document()
    assert document["services"]["d1"]["labels"]["fogify-net.shell"] == "exec"


def test_cpulimitedhost_and_tcintf_given_to_the_network_with_custom_become_limits_and_shaping():
    """Mininet's limit.py idiom: Mininet(host=custom(CPULimitedHost, cpu=...), intf=custom(TCIntf, bw=...)).
    `cpu` is a fraction of the whole machine (cores x cpu CPUs); custom's values win over the link's;
    a TCLink keeps its own TCIntf (Mininet's Link takes cls1/cls2 before intf)."""
    from mininet.link import TCIntf
    from mininet.node import CPULimitedHost
    from mininet.util import custom

    class Pinned(Topo):
        def build(self):
            s1 = self.addSwitch("s1")
            self.addLink(self.addHost("h1"), s1, bw=100)
            self.addLink(self.addHost("h2", cores=[1]), s1, cls=TCLink, delay="5ms")

    net = Mininet(topo=Pinned(), host=custom(CPULimitedHost, sched="rt", cpu=0.25), intf=custom(TCIntf, bw=8))
    document, warnings = net.document()
    model = parse_model(document)
    profiles = {b.label: model.nodes[b.node] for b in model.blueprints}
    cores = __import__("os").cpu_count()
    assert profiles["h1"].cpus == pytest.approx(0.25 * cores) and profiles["h2"].cpuset == "1"
    assert "h1: sched='rt' runs as 'cfs' (a CPU quota): containers here get no real-time CPU time" in warnings
    plan = compile_model(model, HOST)
    assert plan.instance("h1").interface("s1").uplink == QoS(rate=8_000_000)  # custom's bw=8 beat the link's 100
    assert plan.instance("h1").interface("s1").downlink == QoS(rate=8_000_000)
    assert plan.instance("h2").interface("s1").uplink == QoS(delay=0.005)  # the TCLink's own TCIntf


def test_commands_sent_before_start_wait_for_it_and_private_dirs_are_not_mounted_here():
    """A host class that runs commands in its constructor (Mininet's treeping64.py) and privateDirs
    (bind.py): nothing runs on this machine before the network is up; the commands wait for start()."""
    class Quiet(Node):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cmd("sysctl -w net.ipv6.conf.all.disable_ipv6=1")

    net = Mininet()
    h1 = net.addHost("h1", cls=Quiet, privateDirs=["/var/fgt-never"])
    assert h1.cmd("echo later") == ""
    h1.sendCmd("./start.sh")
    assert h1.deferred == [("sysctl -w net.ipv6.conf.all.disable_ipv6=1", True), ("echo later", True),
                           ("./start.sh", False)]
    assert not Path("/var/fgt-never").exists()
