"""ClusterIP/NodePort allocation with the write: pools, admission, finish, repair, built-ins."""

from __future__ import annotations

import asyncio
import copy
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.apiserver.services import (
    AllocationError,
    IPRange,
    PortRange,
    ServiceAdmission,
    builtin_objects,
    held_ips,
    held_ports,
)
from kubesvc.objects.errors import StatusError
from kubesvc.objects.service import ServiceStrategy

S = ServiceStrategy()


def svc(name: str = "web", ns: str = "default", **spec) -> dict:
    spec = copy.deepcopy(spec)  # P80 and friends are shared between tests
    o = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    S.prepare_for_create(o)
    S.default(o)
    S.default_for_storage(o)
    assert S.validate(o) == [], S.validate(o)
    return o


P80 = [{"port": 80}]


async def create(adm: ServiceAdmission, obj: dict, ok: bool = True) -> dict:
    finish = await adm.admit("CREATE", obj, None)
    finish(ok)
    return obj


async def update(adm: ServiceAdmission, old: dict, new: dict, ok: bool = True) -> dict:
    S.prepare_for_update(new, old)  # the API server's order: prepare, then default
    S.default(new)
    S.default_for_storage(new)
    assert S.validate_update(new, old) == [], S.validate_update(new, old)
    finish = await adm.admit("UPDATE", new, old)
    finish(ok)
    return new


async def delete(adm: ServiceAdmission, old: dict, ok: bool = True) -> None:
    finish = await adm.admit("DELETE", None, old)
    finish(ok)


# -- pools ----------------------------------------------------------------------------------

def test_ip_range_excludes_network_and_broadcast():
    r = IPRange("10.0.0.0/29")
    assert r.pool.size == 6
    for bad in ("10.0.0.0", "10.0.0.7", "10.0.1.1"):
        with pytest.raises(AllocationError, match=r"the provided IP \(.*\) is not in the valid range. "
                                                  r"The range of valid IPs is 10.0.0.0/29"):
            r.allocate(bad, "x")


def test_random_allocation_never_takes_the_kubernetes_address_and_fills_the_range():
    r = IPRange("10.0.0.0/29")
    got = {r.allocate_next(f"s{i}") for i in range(5)}
    assert got == {f"10.0.0.{i}" for i in range(2, 7)}
    with pytest.raises(AllocationError, match="range is full"):
        r.allocate_next("more")
    r.allocate("10.0.0.1", "kubernetes")  # but it can be asked for


def test_random_allocation_prefers_the_upper_band():
    r = IPRange("10.96.0.0/12")
    for i in range(200):
        ip = ipaddress.ip_address(r.allocate_next(f"s{i}"))
        assert ip >= ipaddress.ip_address("10.96.1.1")  # the first 256 are the static band


def test_port_range_messages():
    r = PortRange("30000-32767")
    r.allocate(30080, "a")
    with pytest.raises(AllocationError, match="^provided port is already allocated$"):
        r.allocate(30080, "b")
    with pytest.raises(AllocationError, match="^provided port is not in the valid range. "
                                              "The range of valid ports is 30000-32767$"):
        r.allocate(80, "b")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "next", "release"]), st.integers(0, 13)), max_size=80))
def test_pool_model(ops):
    """Against a plain set: never hands out a held port, frees only its own, stays in range."""
    r = PortRange("30000-30013")
    held: dict[int, str] = {}
    for op, n in ops:
        port = 30000 + n
        owner = f"o{n % 3}"
        if op == "take":
            if port in held:
                with pytest.raises(AllocationError):
                    r.allocate(port, owner)
            else:
                r.allocate(port, owner)
                held[port] = owner
        elif op == "next":
            if len(held) == 14:
                with pytest.raises(AllocationError):
                    r.allocate_next(owner)
            else:
                p = r.allocate_next(owner)
                assert 30000 <= p <= 30013 and p not in held
                held[p] = owner
        else:
            r.release(port, owner)
            if held.get(port) == owner:
                del held[port]
        assert {p - 30000: o for p, o in held.items()} == r.pool.owner


# -- admission -------------------------------------------------------------------------------

async def test_create_allocates_random_cluster_ip_and_node_ports():
    adm = ServiceAdmission()
    o = await create(adm, svc(type="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 443}]))
    ip = o["spec"]["clusterIP"]
    assert o["spec"]["clusterIPs"] == [ip] and ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    nps = [p["nodePort"] for p in o["spec"]["ports"]]
    assert len(set(nps)) == 2 and all(30000 <= n <= 32767 for n in nps)
    assert adm.ips.holder(ip) == "default/web" and adm.ports.holder(nps[0]) == "default/web"


async def test_requested_ip_honoured_then_refused_with_kube_message():
    adm = ServiceAdmission()
    await create(adm, svc("redis", clusterIP="10.97.97.97", ports=[{"port": 6379}]))
    with pytest.raises(StatusError) as e:
        await create(adm, svc("other", clusterIP="10.97.97.97", ports=[{"port": 6379}]))
    assert e.value.code == 422
    assert e.value.message == ('Service "other" is invalid: spec.clusterIPs: Invalid value: []string{"10.97.97.97"}: '
                               'failed to allocate IP 10.97.97.97: provided IP is already allocated')
    with pytest.raises(StatusError) as e:
        await create(adm, svc("far", clusterIP="192.168.1.1", ports=P80))
    assert e.value.message.endswith("failed to allocate IP 192.168.1.1: the provided IP (192.168.1.1) is not in "
                                    "the valid range. The range of valid IPs is 10.96.0.0/12")


async def test_requested_node_port_refused_when_taken_or_out_of_range():
    adm = ServiceAdmission()
    await create(adm, svc("myapp", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(StatusError) as e:
        await create(adm, svc("b", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert e.value.message == ('Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                               'provided port is already allocated')
    with pytest.raises(StatusError) as e:
        await create(adm, svc("c", type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert e.value.message == ('Service "c" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port '
                               'is not in the valid range. The range of valid ports is 30000-32767')
    # the refused creates leaked nothing: only myapp's IP and port are held
    assert adm.ips.used() == 1 and adm.ports.used() == 1


async def test_refusal_part_way_leaks_nothing():
    adm = ServiceAdmission()
    await create(adm, svc("a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(StatusError):
        await create(adm, svc("b", type="NodePort", clusterIP="10.96.50.50",
                              ports=[{"name": "x", "port": 81, "nodePort": 30081},
                                     {"name": "y", "port": 82, "nodePort": 30080}]))
    assert adm.ips.holder("10.96.50.50") is None and adm.ports.holder(30081) is None


async def test_tcp_and_udp_share_one_node_port():
    adm = ServiceAdmission()
    o = await create(adm, svc(type="NodePort", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                                      {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]))
    a, b = (p["nodePort"] for p in o["spec"]["ports"])
    assert a == b and adm.ports.used() == 1


async def test_failed_write_gives_back_exactly_what_was_reserved():
    adm = ServiceAdmission()
    o = await create(adm, svc(type="NodePort", clusterIP="10.96.7.7", ports=P80), ok=False)
    assert adm.ips.used() == 0 and adm.ports.used() == 0
    # and the same request can be admitted again
    await create(adm, svc(type="NodePort", clusterIP="10.96.7.7", ports=[{"port": 80, **o["spec"]["ports"][0]}]))
    assert adm.ips.used() == 1


async def test_health_check_node_port_for_local_load_balancers():
    adm = ServiceAdmission()
    o = await create(adm, svc(type="LoadBalancer", externalTrafficPolicy="Local", ports=P80))
    hc = o["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != o["spec"]["ports"][0]["nodePort"] and adm.ports.used() == 2
    with pytest.raises(StatusError) as e:
        await create(adm, svc("b", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=hc,
                              ports=P80))
    assert e.value.code == 500
    assert e.value.message == (f"Internal error occurred: failed to allocate requested HealthCheck NodePort {hc}: "
                               "provided port is already allocated")


async def test_load_balancer_without_node_ports():
    adm = ServiceAdmission()
    o = await create(adm, svc(type="LoadBalancer", allocateLoadBalancerNodePorts=False, ports=P80))
    assert "nodePort" not in o["spec"]["ports"][0] and adm.ports.used() == 0


async def test_headless_and_external_name_take_nothing():
    adm = ServiceAdmission()
    h = await create(adm, svc(clusterIP="None", ports=P80, selector={"a": "b"}))
    e = await create(adm, svc("e", type="ExternalName", externalName="db.example.com"))
    assert h["spec"]["clusterIPs"] == ["None"] and "clusterIP" not in e["spec"]
    assert adm.ips.used() == 0


async def test_type_transitions():
    adm = ServiceAdmission()
    ext = await create(adm, svc(type="ExternalName", externalName="db.example.com"))
    # ExternalName -> ClusterIP allocates
    new = copy.deepcopy(ext)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"] = copy.deepcopy(P80)
    cip = await update(adm, ext, new)
    ip = cip["spec"]["clusterIP"]
    assert adm.ips.holder(ip) == "default/web"
    # ClusterIP -> NodePort allocates node ports, keeps the IP
    new = copy.deepcopy(cip)
    new["spec"]["type"] = "NodePort"
    np_ = await update(adm, cip, new)
    port = np_["spec"]["ports"][0]["nodePort"]
    assert np_["spec"]["clusterIP"] == ip and adm.ports.holder(port) == "default/web"
    # NodePort -> ClusterIP releases the node ports
    new = copy.deepcopy(np_)
    new["spec"]["type"] = "ClusterIP"
    back = await update(adm, np_, new)
    assert adm.ports.holder(port) is None and adm.ips.holder(ip) == "default/web"
    # ClusterIP -> ExternalName releases the IP, on commit only
    new = copy.deepcopy(back)
    new["spec"]["type"] = "ExternalName"
    new["spec"]["externalName"] = "db.example.com"
    S.prepare_for_update(new, back)
    S.default(new)
    S.default_for_storage(new)
    finish = await adm.admit("UPDATE", new, back)
    assert adm.ips.holder(ip) == "default/web"
    finish(True)
    assert adm.ips.holder(ip) is None


async def test_failed_update_keeps_the_old_allocation():
    adm = ServiceAdmission()
    old = await create(adm, svc(type="NodePort", ports=P80))
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["nodePort"] = 31999
    await update(adm, old, new, ok=False)
    assert adm.ports.holder(31999) is None
    assert adm.ports.holder(old["spec"]["ports"][0]["nodePort"]) == "default/web"


async def test_delete_releases_on_commit():
    adm = ServiceAdmission()
    o = await create(adm, svc(type="NodePort", ports=P80))
    await delete(adm, o, ok=False)
    assert adm.ips.used() == 1 and adm.ports.used() == 1
    await delete(adm, o)
    assert adm.ips.used() == 0 and adm.ports.used() == 0


async def test_concurrent_creates_for_one_ip_exactly_one_wins():
    adm = ServiceAdmission()

    async def one(i: int):
        finish = await adm.admit("CREATE", svc(f"s{i}", clusterIP="10.96.33.33", type="NodePort",
                                              ports=[{"port": 80, "nodePort": 30333}]), None)
        await asyncio.sleep(0)  # the write
        finish(True)

    results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, StatusError) and r.code == 422 for r in results if r is not None)
    assert adm.ips.used() == 1 and adm.ports.used() == 1


async def test_cluster_not_dual_stack():
    adm = ServiceAdmission()
    with pytest.raises(StatusError) as e:
        await create(adm, svc(ipFamilyPolicy="RequireDualStack", ports=P80))
    assert e.value.message == ('Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": '
                               'this cluster is not configured for dual-stack services')
    o = await create(adm, svc("p", ipFamilyPolicy="PreferDualStack", ports=P80))
    assert o["spec"]["ipFamilies"] == ["IPv4"] and len(o["spec"]["clusterIPs"]) == 1
    with pytest.raises(StatusError) as e:
        await create(adm, svc("q", ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4", "IPv6"], ports=P80))
    assert e.value.message == ('Service "q" is invalid: spec.ipFamilies[1]: Invalid value: "IPv6": '
                               'not configured on this cluster')
    # headless without selector names both families even here, as kube-apiserver allows
    h = await create(adm, svc("h", clusterIP="None", ports=P80))
    assert h["spec"]["ipFamilies"] == ["IPv4", "IPv6"] and adm.ips.used() == 1


async def test_ipv6_service_cidr():
    try:
        adm = ServiceAdmission("fd00:10:96::/112")
        o = await create(adm, svc(ports=P80))
        assert o["spec"]["ipFamilies"] == ["IPv6"]
        assert ipaddress.ip_address(o["spec"]["clusterIP"]) in ipaddress.ip_network("fd00:10:96::/112")
        objs = builtin_objects("::1", 6443)
        assert objs[0]["spec"]["clusterIP"] == "fd00:10:96::1" and objs[3]["spec"]["clusterIP"] == "fd00:10:96::a"
        assert objs[2]["addressType"] == "IPv6"
    finally:
        ServiceAdmission()  # back to the IPv4 default for the other tests


# -- repair ----------------------------------------------------------------------------------

async def test_repair_rebuilds_and_reports():
    adm = ServiceAdmission()
    a = await create(adm, svc("a", type="NodePort", ports=P80))
    b = await create(adm, svc("b", clusterIP="10.97.97.97", ports=P80))
    dup = copy.deepcopy(b)
    dup["metadata"]["name"] = "dup"
    far = svc("far", ports=P80)
    far["spec"]["clusterIP"] = "192.168.0.1"
    far["spec"]["clusterIPs"] = ["192.168.0.1"]

    fresh = ServiceAdmission()
    problems = fresh.repair([a, b, dup, far])
    assert fresh.ips.holder(a["spec"]["clusterIP"]) == "default/a"
    assert fresh.ports.holder(a["spec"]["ports"][0]["nodePort"]) == "default/a"
    assert fresh.ips.holder("10.97.97.97") == "default/b"
    assert problems == [
        "service default/dup: Cluster IP 10.97.97.97 was assigned to multiple services (also default/b); "
        "please recreate service",
        "service default/far: Cluster IP 192.168.0.1 is not within the service CIDR 10.96.0.0/12; "
        "please recreate service",
    ]
    with pytest.raises(StatusError):
        await create(fresh, svc("c", clusterIP="10.97.97.97", ports=P80))


# -- built-ins --------------------------------------------------------------------------------

async def test_builtins_derive_from_the_cidr_and_pass_admission():
    objs = builtin_objects("127.0.0.1", 6443)
    kinds = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs]
    assert kinds == [("Service", "default", "kubernetes"), ("Endpoints", "default", "kubernetes"),
                     ("EndpointSlice", "default", "kubernetes"), ("Service", "kube-system", "kube-dns")]
    adm = ServiceAdmission()
    k8s = await create(adm, svc("kubernetes", **objs[0]["spec"]))
    dns = await create(adm, svc("kube-dns", "kube-system", **objs[3]["spec"]))
    assert k8s["spec"]["clusterIP"] == "10.96.0.1" and k8s["spec"]["ports"][0]["targetPort"] == 6443
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["port"], p["protocol"]) for p in dns["spec"]["ports"]] == [(53, "UDP"), (53, "TCP"), (9153, "TCP")]
    other = builtin_objects("127.0.0.1", 6443, "10.100.0.0/16")
    assert other[0]["spec"]["clusterIP"] == "10.100.0.1" and other[3]["spec"]["clusterIP"] == "10.100.0.10"


# -- model: any sequence of writes, any of them failing, leaves the pools = what is stored ----------

_op = st.tuples(
    st.sampled_from(["create", "update", "delete"]),
    st.integers(0, 5),  # which service
    st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "headless", "local-lb"]),
    st.one_of(st.none(), st.sampled_from(["10.96.0.2", "10.96.0.3"])),  # a requested IP
    st.one_of(st.none(), st.sampled_from([30000, 30001])),  # a requested node port
    st.booleans(),  # does the store write succeed?
)


def _spec_for(kind: str, ip: str | None, port: int | None) -> dict:
    if kind == "ExternalName":
        return {"type": "ExternalName", "externalName": "db.example.com"}
    if kind == "headless":
        return {"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]}
    spec: dict = {"type": "LoadBalancer" if kind == "local-lb" else kind, "ports": [{"port": 80}]}
    if kind == "local-lb":
        spec["externalTrafficPolicy"] = "Local"
    if ip:
        spec["clusterIP"] = ip
    if port and kind != "ClusterIP":
        spec["ports"][0]["nodePort"] = port
    return spec


@settings(max_examples=80, deadline=None)
@given(st.lists(_op, max_size=30))
def test_admission_model(ops):
    adm = ServiceAdmission("10.96.0.0/28", "30000-30007")
    stored: dict[str, dict] = {}

    async def run():
        for op, i, kind, ip, port, ok in ops:
            name = f"s{i}"
            key = f"default/{name}"
            old = stored.get(key)
            try:
                if op == "create" and old is None:
                    obj = svc(name, **_spec_for(kind, ip, port))
                    finish = await adm.admit("CREATE", obj, None)
                elif op == "update" and old is not None:
                    obj = copy.deepcopy(old)
                    obj["spec"] = _spec_for(kind, ip, port)
                    S.prepare_for_update(obj, old)
                    S.default(obj)
                    S.default_for_storage(obj)
                    if S.validate_update(obj, old):
                        continue  # refused by validation (e.g. a changed clusterIP)
                    finish = await adm.admit("UPDATE", obj, old)
                elif op == "delete" and old is not None:
                    obj = None
                    finish = await adm.admit("DELETE", None, old)
                else:
                    continue
            except StatusError:
                continue
            finish(ok)
            if ok:
                if obj is None:
                    del stored[key]
                else:
                    stored[key] = obj
            # invariant: the pools hold exactly what the stored services hold, each value once
            want_ips = {ip: k for k, o in stored.items() for ip in held_ips(o)}
            want_ports = {p: k for k, o in stored.items() for p in held_ports(o)}
            assert sum(len(held_ips(o)) for o in stored.values()) == len(want_ips)
            assert sum(len(held_ports(o)) for o in stored.values()) == len(want_ports)
            assert {adm.ips.nth(1 + s): o for s, o in adm.ips.pool.owner.items()} == want_ips
            assert {30000 + s: o for s, o in adm.ports.pool.owner.items()} == want_ports

    asyncio.run(run())
