"""The agent's state directory and host-local IPAM."""

from __future__ import annotations

import pytest

from kubesvc.agent.network import netns_name, veth_name
from kubesvc.agent.state import IPAM, ContainerRecord, PodRecord, StateDir


def test_ipam_skips_gateway_keeps_addresses_per_uid_and_reuses_released(tmp_path):
    ipam = IPAM(tmp_path)
    a = ipam.allocate("10.244.1.0/24", "uid-a")
    b = ipam.allocate("10.244.1.0/24", "uid-b")
    assert (a, b) == ("10.244.1.2", "10.244.1.3")
    assert IPAM(tmp_path).allocate("10.244.1.0/24", "uid-a") == a  # survives a restart
    ipam.release(a, "uid-b")  # not the owner: kept
    assert ipam.owner(a) == "uid-a"
    ipam.release(a, "uid-a")
    assert ipam.allocate("10.244.1.0/24", "uid-c") == a


def test_ipam_exhaustion(tmp_path):
    ipam = IPAM(tmp_path)
    ipam.allocate("10.244.9.0/30", "x")  # .1 gateway, .2 the only pod address
    with pytest.raises(RuntimeError, match="no free address"):
        ipam.allocate("10.244.9.0/30", "y")


def test_pod_records_round_trip(tmp_path):
    st = StateDir(tmp_path)
    rec = PodRecord(uid="u1", namespace="default", name="web", netns="n", ip="10.244.1.2", veth="vethx",
                    containers={"c": ContainerRecord(name="c", restart_count=2, pid=42, last={"exitCode": 1})})
    st.save(rec)
    (loaded,) = StateDir(tmp_path).load_all()
    assert loaded == rec
    st.remove("u1")
    assert StateDir(tmp_path).load_all() == []


def test_names_fit_kernel_limits_and_carry_the_node():
    assert len(veth_name("0123-uid")) <= 15
    assert veth_name("a") != veth_name("b")
    name = netns_name("ks12ab-node01", "default", "myapp-67b6dfcd8-rc7t8", "5f1c9a2e-aaaa")
    assert name == "ks12ab-node01-default-myapp-67b6dfcd8-rc7t8-5f1c9a2e"
    assert "/" not in netns_name("n", "ns", "a/b", "u")


def test_log_rotation_keeps_appending_writer_working(tmp_path):
    import os

    from kubesvc.agent.state import rotate_log
    log = tmp_path / "0.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as the container holds it
    os.write(fd, b"x" * 100)
    assert not rotate_log(log, 1000)
    assert rotate_log(log, 50)
    os.write(fd, b"after\n")
    os.close(fd)
    assert log.read_bytes() == b"after\n"
    assert (tmp_path / "0.log.1").read_bytes() == b"x" * 100
