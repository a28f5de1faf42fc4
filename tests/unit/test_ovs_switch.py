"""`--switch ovs`: when it is refused, the controller address, the port filters, the ports without a master."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest

from fogify_net.backends.local.ovs import controller_target, datapath_id
from fogify_net.compile.links import veth_commands
from fogify_net.compile.netfilter import nft_port_filters, nft_teardown
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.host.capabilities import BRIDGE, NETEM, OVS, RATE_ONLY, USERSPACE, Capabilities
from fogify_net.model import ModelBuilder

STOCK = Capabilities(root=True, docker=True, mininet=True, htb=True, netem=True, nft_bridge=True, nfqueue=True,
                     physdev=True, br_netfilter=True, ovs_kernel=True, delayd="/usr/local/bin/fogify-delayd",
                     cgroup="v2")
NO_OVS = dataclasses.replace(STOCK, ovs_kernel=False)


def test_a_bridge_is_the_default_and_always_possible():
    assert STOCK.switch("bridge", USERSPACE) == BRIDGE
    assert NO_OVS.switch("", NETEM) == BRIDGE


def test_ovs_with_netem_or_rates_only_where_the_module_is():
    assert STOCK.switch("ovs", NETEM) == OVS
    assert STOCK.switch("ovs", RATE_ONLY) == OVS


def test_ovs_is_refused_with_the_user_space_mechanism_saying_why():
    with pytest.raises(ValueError, match="user-space shaping.*bridge netfilter.*bypasses"):
        STOCK.switch("ovs", USERSPACE)


def test_ovs_is_refused_without_the_kernel_module():
    with pytest.raises(ValueError, match="no openvswitch module"):
        NO_OVS.switch("ovs", NETEM)
    with pytest.raises(ValueError, match="unknown switch 'vde'"):
        STOCK.switch("vde", NETEM)


def test_the_controller_does_not_start_with_a_switch_this_machine_refuses(tmp_path):
    from fogify_net.controller import Controller

    userspace_only = dataclasses.replace(STOCK, netem=False, ovs_kernel=True)
    with pytest.raises(ValueError, match="bridge netfilter"):
        Controller(data_dir=tmp_path, capabilities=userspace_only, backend_options={"switch": "ovs"})


@pytest.mark.parametrize("address, target", [
    ("10.0.0.5", "tcp:10.0.0.5:6653"),
    ("10.0.0.5:6633", "tcp:10.0.0.5:6633"),
    ("tcp:127.0.0.1:6699", "tcp:127.0.0.1:6699"),
    ("ssl:192.0.2.1:6653", "ssl:192.0.2.1:6653"),
])
def test_controller_addresses(address, target):
    assert controller_target(address) == target


@pytest.mark.parametrize("address", ["controller", "10.0.0.5:99999", "10.0.0.5:x", "tcp:", "1.2.3.4:5:6"])
def test_bad_controller_addresses_are_refused(address):
    with pytest.raises(ValueError, match="controller"):
        controller_target(address)


def test_datapath_ids_are_16_hex_digits_and_differ_per_bridge():
    ids = {datapath_id(name) for name in ("fgn-lan", "fgn-wan", "fgn-a1b2c3-0f0f")}
    assert len(ids) == 3 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def plan_with_partition():
    m = ModelBuilder()
    m.service("app", image="fogify-net/base:latest", command=["sleep", "infinity"])
    m.node("box", cores=1, clock_speed=2000, memory="256M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps"})
    m.blueprint("x", node="box", service="app", networks=["lan"])
    m.blueprint("w", node="box", service="app", networks=["lan"])
    return compile_model(m.build(), HostFacts(cpu_mhz=2000, cpus=2, memory=2**34))


def test_port_filters_are_a_netdev_table_on_every_ports_ingress():
    plan = plan_with_partition()
    ports = [i.port for instance in plan.instances for i in instance.interfaces]
    assert nft_port_filters(plan, ports) == "table netdev fogify_net\ndelete table netdev fogify_net\n"
    plan.partitions = {("x", "w", None)}
    text = nft_port_filters(plan, ports)
    x, w = (plan.instance(n).interface("lan").ip for n in ("x.1", "w.1"))
    assert isinstance(x, IPv4Address)
    assert f'type filter hook ingress devices = {{ "{ports[0]}", "{ports[1]}" }} priority -10;' in text
    assert f"ip saddr {{ {x} }} ip daddr {{ {w} }} drop" in text
    assert f"ip saddr {{ {w} }} ip daddr {{ {x} }} drop" in text


def test_teardown_removes_both_tables():
    assert nft_teardown() == ("table bridge fogify_net\ndelete table bridge fogify_net\n"
                              "table netdev fogify_net\ndelete table netdev fogify_net\n")


def test_ovs_ports_get_no_linux_bridge_master():
    plan = plan_with_partition()
    instance = plan.instance("x.1")
    bridges = {"lan": plan.networks["lan"].bridge}
    assert any(" master " in line for line in veth_commands(instance, 42, bridges))
    assert not any(" master " in line for line in veth_commands(instance, 42, bridges, master=False))
