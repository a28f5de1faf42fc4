"""Compose's tmpfs and security_opt: parsed strictly, security options that lift confinement counted as
host access, and on Swarm turned into mounts or refused naming the field (volumes were dropped there)."""

from __future__ import annotations

import pytest
import yaml

from fogify_net.backends.swarm.manager import unsupported_topology
from fogify_net.backends.swarm.services import mounts
from fogify_net.compile.plan import compile_model
from fogify_net.compile.resources import HostFacts
from fogify_net.model import ModelError
from fogify_net.model.parse import parse_model_text

HOST = HostFacts(cpu_mhz=2000, cpus=2, memory=2**34)


def model(**service):
    return parse_model_text(yaml.safe_dump({
        "services": {"app": {"image": "fogify-net/base:latest", **service}},
        "x-fogify": {"nodes": [{"name": "n", "capabilities": {"processor": {"cores": 1, "clock_speed": 1000}}}],
                     "networks": [{"name": "lan"}],
                     "topology": [{"label": "a", "service": "app", "node": "n", "networks": ["lan"]}]},
    }))


def test_tmpfs_takes_one_path_or_a_list_with_dockers_options():
    assert model(tmpfs="/run").services["app"].tmpfs == (("/run", ""),)
    assert model(tmpfs=["/tmp", "/run:size=64m,mode=1777,noexec"]).services["app"].tmpfs == (
        ("/tmp", ""), ("/run", "size=64m,mode=1777,noexec"))


@pytest.mark.parametrize("tmpfs, message", [
    ("run", r"services\.app\.tmpfs: expected an absolute path in the container, got 'run'"),
    (["/tmp", "/run:sise=1m"], r"services\.app\.tmpfs\[1\]: unknown tmpfs option 'sise=1m'"),
    (["/run:size=lots"], r"services\.app\.tmpfs\[0\]: tmpfs size 'lots': expected bytes"),
    (["/run:mode=rwx"], r"services\.app\.tmpfs\[0\]: tmpfs mode 'rwx': expected octal"),
    (["/run:noexec=1"], r"unknown tmpfs option 'noexec=1'"),
    ([{"path": "/run"}], r"services\.app\.tmpfs\[0\]"),
])
def test_a_bad_tmpfs_is_an_error_naming_the_entry(tmpfs, message):
    with pytest.raises(ModelError, match=message):
        model(tmpfs=tmpfs)


def test_security_options_that_lift_confinement_are_host_access_and_no_new_privileges_is_not():
    service = model(security_opt=["no-new-privileges:true", "seccomp=unconfined"]).services["app"]
    assert service.security_opt == ("no-new-privileges:true", "seccomp=unconfined")
    assert service.host_access == (("services.app.security_opt[1]", "'seccomp=unconfined' lifts the container's "
                                                                    "confinement"),)
    assert model(security_opt=["no-new-privileges"]).services["app"].host_access == ()


def test_on_swarm_volumes_and_tmpfs_are_mounts_and_named_volumes_are_marked_ours():
    service = model(volumes=["data:/data", "/srv/www:/www:ro", "/cache"],
                    tmpfs=["/run:size=64m,mode=1777"]).services["app"]
    assert [dict(m) for m in mounts(service)] == [
        {"Target": "/data", "Source": "data", "Type": "volume", "ReadOnly": False,
         "VolumeOptions": {"Labels": {"fogify-net": "volume"}}},
        {"Target": "/www", "Source": "/srv/www", "Type": "bind", "ReadOnly": True},
        {"Target": "/cache", "Source": None, "Type": "volume", "ReadOnly": False,
         "VolumeOptions": {"Labels": {"fogify-net": "volume"}}},
        {"Target": "/run", "Source": None, "Type": "tmpfs", "ReadOnly": False,
         "TmpfsOptions": {"SizeBytes": 64 * 2**20, "Mode": 0o1777}},
    ]


def test_swarm_refuses_security_options_and_tmpfs_flags_naming_the_field():
    with pytest.raises(ModelError, match=r"^services\.app\.security_opt: not supported on Swarm"):
        unsupported_topology(compile_model(model(security_opt=["no-new-privileges"]), HOST))
    with pytest.raises(ModelError, match=r"^services\.app\.tmpfs\[0\]: on Swarm a tmpfs takes only size and mode, "
                                         r"not noexec"):
        unsupported_topology(compile_model(model(tmpfs=["/run:size=1m,noexec"]), HOST))
    unsupported_topology(compile_model(model(tmpfs=["/run:size=1m,mode=755"]), HOST))
