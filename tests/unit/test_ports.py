"""Published ports in the model and the plan: compose's short and long syntax, the choices and their errors."""

from __future__ import annotations

import pytest

from fogify_net.backends.swarm.manager import unsupported_topology
from fogify_net.compile.plan import add_instances, compile_model, remove_instances
from fogify_net.compile.resources import HostFacts
from fogify_net.model import ModelBuilder, ModelError
from fogify_net.model.ports import parse_ports
from fogify_net.model.schema import PublishedPort
from fogify_net.render import status_table

HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)
IMAGE = "fogify-net/base:latest"


def described(raw) -> list[str]:
    return [port.describe() for port in parse_ports(raw, "services.web.ports")]


def test_short_syntax_defaults_to_loopback_and_honours_an_explicit_address():
    assert described(["8080:80", "0.0.0.0:8081:80", "127.0.0.2:8082:80/tcp", "[::1]:8083:80", 8084]) == [
        "127.0.0.1:8080->80", "0.0.0.0:8081->80", "127.0.0.2:8082->80", "[::1]:8083->80", "127.0.0.1:*->8084"]


def test_a_bare_container_port_or_an_empty_host_port_is_any_free_host_port():
    assert parse_ports(["80", "10.0.0.1::81"], "p") == (PublishedPort(80, None), PublishedPort(81, None, "10.0.0.1"))


def test_ranges_are_one_entry_per_port():
    assert described(["8080-8082:80-82"]) == ["127.0.0.1:8080->80", "127.0.0.1:8081->81", "127.0.0.1:8082->82"]
    assert described(["90-91"]) == ["127.0.0.1:*->90", "127.0.0.1:*->91"]


def test_long_syntax():
    assert described([{"target": 80, "published": "8080", "host_ip": "0.0.0.0", "protocol": "tcp", "mode": "host"},
                      {"target": 81}]) == ["0.0.0.0:8080->80", "127.0.0.1:*->81"]


def test_udp_is_published_and_one_host_port_may_carry_tcp_and_udp():
    assert described(["5683:5683/udp", "53:53/UDP", "53:53", {"target": 1883, "protocol": "udp"}]) == [
        "127.0.0.1:5683->5683/udp", "127.0.0.1:53->53/udp", "127.0.0.1:53->53", "127.0.0.1:*->1883/udp"]
    assert parse_ports(["5683:5683/udp"], "p")[0].protocol == "udp"


@pytest.mark.parametrize(("raw", "field", "problem"), [
    (["9:9/sctp"], r"services\.web\.ports\[0\]", "protocol 'sctp' is not published: fogify-net relays TCP and UDP"),
    ([{"target": 9, "protocol": "sctp"}], r"services\.web\.ports\[0\]\.protocol", "protocol 'sctp'"),
    (["8080-8090:80"], r"services\.web\.ports\[0\]", "a host range for one container port"),
    (["localhost:8080:80"], r"services\.web\.ports\[0\]", "host address 'localhost' is not an IP address"),
    (["8080:70000"], r"services\.web\.ports\[0\]", "container port '70000' is not a port number"),
    (["x:80"], r"services\.web\.ports\[0\]", "host port 'x' is not a port number"),
    (["1:2:3:4"], r"services\.web\.ports\[0\]", "cannot read"),
    (["[::1]8080:80"], r"services\.web\.ports\[0\]", "cannot read"),
    (["82-80"], r"services\.web\.ports\[0\]", "runs backwards"),
    ([{"published": 8080}], r"services\.web\.ports\[0\]\.target", "missing"),
    ([{"target": 80, "hostip": "0.0.0.0"}], r"services\.web\.ports\[0\]\.hostip", "unknown field"),
    ([["8080", "80"]], r"services\.web\.ports\[0\]", "expected"),
    ("8080:80", r"services\.web\.ports", "expected a list"),
    (["8080:80", "8080:81"], r"services\.web\.ports", "host port 8080/tcp on 127.0.0.1 is published twice"),
    (["1-100", "200"], r"services\.web\.ports", "more than 100 published ports"),
])
def test_errors_name_the_field(raw, field, problem):
    with pytest.raises(ModelError, match=rf"^{field}: .*{problem}"):
        parse_ports(raw, "services.web.ports")


def builder(web_ports, api_ports=None, replicas=1, api_service="api") -> ModelBuilder:
    m = ModelBuilder()
    m.service("web", image=IMAGE, ports=web_ports)
    m.service("api", image=IMAGE, **({"ports": api_ports} if api_ports is not None else {}))
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("lan")
    m.blueprint("web", node="n", service="web", networks=["lan"], replicas=replicas)
    m.blueprint("api", node="n", service=api_service, networks=["lan"])
    return m


def test_two_services_on_one_host_port_name_both():
    with pytest.raises(ModelError, match=r"^services\.api\.ports\[0\]: host port 8080/tcp is also published by "
                                         r"services\.web\.ports\[0\] \(blueprint web\)"):
        builder(["8080:80"], ["0.0.0.0:8080:81"]).build()
    with pytest.raises(ModelError, match=r"^services\.web\.ports\[0\]: blueprints web and api both run service web"):
        builder(["8080:80"], api_service="web").build()
    builder(["8080:80"], ["8080:81/udp"]).build()  # one port number, two protocols: no clash
    builder(["127.0.0.1:8080:80"], ["127.0.0.2:8080:80"]).build()  # two addresses: no clash
    builder(["80"], api_service="web").build()  # free host ports: no clash


def test_a_fixed_port_goes_to_the_first_replica_and_a_free_one_to_every_replica():
    model = builder(["8080:80", "90"], replicas=3).build()
    warning = "services.web.ports[0]: host port 8080 is published for web.1 only"
    assert any(w.startswith(warning) for w in model.warnings)
    plan = compile_model(model, HOST)
    assert [[p.describe() for p in i.ports] for i in plan.instances_of("web")] == [
        ["127.0.0.1:8080->80", "127.0.0.1:*->90"], ["127.0.0.1:*->90"], ["127.0.0.1:*->90"]]
    assert plan.instance("api.1").ports == []
    # horizontal scaling: a new replica gets the free ones; the fixed one comes back with slot 1 only
    assert [p.describe() for p in add_instances(plan, "web", 1)[0].ports] == ["127.0.0.1:*->90"]
    remove_instances(plan, "web", 4)
    assert [p.describe() for p in add_instances(plan, "web", 1)[0].ports] == ["127.0.0.1:8080->80", "127.0.0.1:*->90"]


def test_swarm_refuses_published_ports_naming_the_field():
    plan = compile_model(builder(["8080:80"]).build(), HOST)
    with pytest.raises(ModelError, match=r"^services\.web\.ports: published ports are not supported on Swarm"):
        unsupported_topology(plan)
    unsupported_topology(compile_model(builder([]).build(), HOST))


def test_the_status_table_shows_the_bound_ports():
    instance = {"name": "web.1", "node": "n", "cpus": 0.5, "memory": 2**27, "networks": {"lan": {"ip": "10.0.0.2"}},
                "ports": [{"host_ip": "127.0.0.1", "published": 8080, "target": 80},
                          {"host_ip": "::1", "published": 41000, "target": 90}]}
    lines = status_table({"status": "running", "instances": [instance, {**instance, "name": "web.2", "ports": []}]})
    assert lines.splitlines()[2].split()[-1] == "PUBLISHED"
    assert lines.splitlines()[4].endswith("127.0.0.1:8080->80, [::1]:41000->90")
    assert lines.splitlines()[5].endswith(" -")
    assert "PUBLISHED" not in status_table({"status": "running", "instances": [{**instance, "ports": []}]})


def test_the_dry_run_lists_what_each_instance_publishes():
    from fogify_net.dryrun import dry_run

    text = dry_run("", shaping="userspace", model=builder(["8080:80", "90"], replicas=2).build())
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("web.1 ", "web.2 "))
             and "publishes" in line}
    assert lines["web.1"].endswith("; publishes 127.0.0.1:8080->80; publishes 127.0.0.1:*->90")
    assert lines["web.2"].endswith("; publishes 127.0.0.1:*->90")


def test_a_port_published_beyond_loopback_reaches_into_the_host():
    """The API refuses it without --allow-host-access, as it does privileged or host binds."""
    from fogify_net.model.compose import parse_service

    def access(ports):
        return parse_service("web", {"image": "img", "ports": ports}, "services.web", None, []).host_access

    assert access(["8080:80", "127.0.0.2:8081:80", "[::1]:8082:80"]) == ()
    assert access(["0.0.0.0:8080:80", "10.1.2.3:8081:81"]) == (
        ("services.web.ports", "publishes on 0.0.0.0, 10.1.2.3, beyond this machine's loopback"),)
