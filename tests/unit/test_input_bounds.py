"""Input a kernel, Docker or a batch file would choke on is refused by the model layer, naming the field;
and what the API shows of a deployment in Fogify's shapes (pure parts)."""

from __future__ import annotations

import pytest

from fogify_net.host.kernel import name_failed_line
from fogify_net.model import ModelBuilder, ModelError
from fogify_net.model.actions import parse_action
from fogify_net.model.compose import parse_service
from fogify_net.model.fields import valid_name
from fogify_net.model.units import parse_clock, parse_count, parse_delay, parse_rate, parse_size
from FogifySDK import instance_names


@pytest.mark.parametrize("parse, value", [
    (parse_rate, "1e300Tbps"), (parse_rate, "1e20Tbps"), (parse_size, "1e300T"), (parse_clock, "1e308GHz"),
    (parse_count, int("9" * 400)), (parse_count, 10**12), (parse_delay, "61m"), (parse_delay, "1e400ms"),
    (parse_rate, "nanMbps"), (parse_size, "infG"),
])
def test_numbers_beyond_what_the_kernel_takes_are_model_errors(parse, value):
    with pytest.raises(ModelError) as error:
        parse(value, "x.field")
    assert error.value.path == "x.field"


def test_the_largest_values_still_accepted():
    assert parse_rate("1Tbps", "f") == 10**12 and parse_delay("60s", "f") == 60 and parse_size("1T", "f") == 2**40


@pytest.mark.parametrize("name", ["lan\n", "lan\nlink del lo", "la n", "lan;x", "lan}", 'lan"', "x" * 49, ""])
def test_names_that_could_reach_a_batch_or_a_hostname_are_refused(name):
    with pytest.raises(ModelError):
        valid_name(name, "f")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "+1e400", "+nan"])
def test_vertical_scaling_wants_finite_numbers(value):
    with pytest.raises(ModelError):
        parse_action("vertical_scaling", {"instance_type": "a", "action": "cpu", "value": value})


def test_a_command_with_an_unbalanced_quote_is_a_model_error():
    with pytest.raises(ModelError) as error:
        parse_action("command", {"instance_type": "a", "action": {"command": "sh -c 'echo"}})
    assert "No closing quotation" in str(error.value)


@pytest.mark.parametrize("raw, field", [
    ({"privileged": True}, "services.s.privileged"),
    ({"volumes": ["/:/host"]}, "services.s.volumes[0]"),
    ({"cap_add": ["SYS_ADMIN"]}, "services.s.cap_add"),
    ({"pid": "host"}, "services.s.pid"),
    ({"network_mode": "host"}, "services.s.network_mode"),
    ({"devices": ["/dev/mem:/dev/mem"]}, "services.s.devices"),
])
def test_host_access_is_found_with_its_field(raw, field):
    service = parse_service("s", {"image": "x", **raw}, "services.s", None, [])
    assert [f for f, _ in service.host_access] == [field]


def test_ordinary_services_reach_nothing_of_the_host():
    service = parse_service("s", {"image": "x", "cap_add": ["NET_ADMIN"], "volumes": ["data:/data", "/tmp/x"]},
                            "services.s", None, [])
    assert service.host_access == ()


def test_a_failed_batch_names_its_line():
    message = name_failed_line("ip -batch - failed: RTNETLINK answers: File exists\nCommand failed -:2",
                               ["link add name fgnh1e0 type veth", "link add name fgnh2e1 type veth"])
    assert message.endswith("(line 2: link add name fgnh2e1 type veth)")
    assert name_failed_line("no line here", ["a"]) == "no line here"


def test_topology_in_fogifys_swarm_shape_and_back_to_names():
    from fogify_net.backends.base import TaskFacts
    from fogify_net.compile.plan import compile_model
    from fogify_net.compile.resources import HostFacts
    from fogify_net_api.compat import swarm_tasks

    m = ModelBuilder()
    m.service("app", image="img:1")
    m.node("n", cores=1, clock_speed=1000, memory="128M")
    m.network("lan", bidirectional={"bandwidth": "10Mbps"})
    m.network("wan", bidirectional={"bandwidth": "10Mbps"})
    m.blueprint("node", node="n", service="app", networks=["wan", "lan"], replicas=2)
    plan = compile_model(m.build(), HostFacts(cpu_mhz=2000, cpus=2, memory=2**33))
    facts = {i.name: TaskFacts(id=f"t{i.slot}", node_id="host", container_id=f"c{i.slot}", pid=100 + i.slot,
                               state="failed" if i.slot == 2 else "running", created="2026-01-01T00:00:00Z")
             for i in plan.instances}
    shape = swarm_tasks({"node": [(i, facts[i.name]) for i in plan.instances]})
    tasks = shape["fogify_node"]
    assert [t["Slot"] for t in tasks] == [1, 2]
    assert tasks[0]["Status"]["ContainerStatus"] == {"ContainerID": "c1", "PID": 101, "ExitCode": 0}
    assert [a["Network"]["Spec"]["Name"] for a in tasks[0]["NetworksAttachments"]] == ["wan", "lan"]
    assert tasks[0]["NetworksAttachments"][0]["Addresses"][0].endswith("/24")
    assert tasks[1]["Status"]["State"] == "failed" and tasks[1]["DesiredState"] == "shutdown"
    assert instance_names(shape) == {"node": ["node.1"]}
