"""One step of a proxy mode switch, run inside a test namespace by test_mode_switch.py.

`python -m tests.integration.proxy_ipvs.switch_steps STEP` with STEP one of:

- ``iptables``: the iptables data plane syncs a small world (ClusterIP, NodePort, an LB
  with source ranges, a service without endpoints: DNAT chains and filter REJECTs);
- ``ipvs-rules``: what the ipvs data plane's first sync does in iptables and ipset —
  the other modes' leftovers removed (cleanup.remove_leftovers), its sets created,
  its rules restored and its jumps ensured (IPVS itself is not needed for that part,
  and this kernel has none);
- ``nftables``: the nftables mode's cleanup of every iptables-based mode;
- ``ipvs-no-xt-ipvs``: the ipvs plane's rules for an LB whose source ranges leave the
  node out, on a kernel without the xt_ipvs match (this one): written without
  KUBE-IPVS-OUT-FILTER's rule, with a warning.
"""

from __future__ import annotations

import logging
import sys

import uvloop

from kubesvc.proxy.dataplanes import ipset as ipsets
from kubesvc.proxy.dataplanes.cleanup import remove_leftovers
from kubesvc.proxy.dataplanes.iptables import Backend, IptablesDataPlane, ensure_jumps
from kubesvc.proxy.dataplanes.ipvs import JUMPS, render_rules, service_contribution
from kubesvc.proxy.model import DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort, ServicePortName

BACKEND = Backend("legacy")
NODE_IP = "192.168.50.1"


def world() -> DesiredState:
    eps = EndpointSet.categorize([Endpoint("10.244.1.10", 8080, "node1", True),
                                  Endpoint("10.244.1.11", 8080, "node1", True)])

    def port(name: str, cip: str, **kw) -> ServicePort:
        return ServicePort(ServicePortName("default", name, "http"), cip, 80, **kw)
    services = [ServiceEntry(port("web", "10.96.10.10", node_port=30080), eps),
                ServiceEntry(port("lb", "10.96.10.11", node_port=30081, load_balancer_ips=("198.51.100.7",),
                                  load_balancer_source_ranges=("192.168.50.0/24",)), eps),
                ServiceEntry(port("empty", "10.96.10.13", node_port=30083))]
    return DesiredState({e.port.name: e for e in services}, node_name="node1", node_ips=(NODE_IP,))


async def step(name: str) -> None:
    desired = world()
    if name == "iptables":
        await IptablesDataPlane(BACKEND).sync(desired, full=True)
    elif name == "ipvs-rules":
        await remove_leftovers(BACKEND, "ipvs")
        contribs = [service_contribution(e, "rr", (NODE_IP,), NODE_IP) for e in desired.services.values()]
        adds: dict[str, set[str]] = {}
        for c in contribs:
            for set_name, entry in c.entries:
                adds.setdefault(set_name, set()).add(entry)
        await ipsets.restore(ipsets.render_restore(adds, {}, create=True))
        rc, err = await BACKEND.restore_noflush(render_rules(set(adds), "10.244.0.0/16"))
        assert rc == 0, err
        await ensure_jumps(BACKEND, JUMPS)
    elif name == "nftables":
        await remove_leftovers(BACKEND, "nftables")
    elif name == "ipvs-no-xt-ipvs":
        from kubesvc.proxy.dataplanes.base import changed_services
        from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane
        logging.basicConfig(level=logging.INFO)
        lb = desired.services[ServicePortName("default", "lb", "http")]
        port = lb.port.__class__(**{**{f: getattr(lb.port, f) for f in lb.port.__slots__},
                                    "load_balancer_source_ranges": ("10.1.0.0/16",)})
        desired.services[port.name] = ServiceEntry(port, lb.endpoints)
        dp = IpvsDataPlane(BACKEND)
        dp._node_addrs, dp._node_ip = (NODE_IP,), NODE_IP
        dp._update_contributions(desired, changed_services(desired, {}, True), set(), set(), set())
        assert dp._want_out, "the LB's ranges leave the node out"
        adds: dict[str, set[str]] = {}
        for set_name, entry in dp._want_entries:
            adds.setdefault(set_name, set()).add(entry)
        await ipsets.restore(ipsets.render_restore(adds, {}, create=True))
        await dp._write_rules(dp.rules_text())
    else:
        raise SystemExit(f"unknown step {name}")


if __name__ == "__main__":
    uvloop.run(step(sys.argv[1]))
