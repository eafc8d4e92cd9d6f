"""The userspace data plane (the seed's first model): the proxy process relays every connection.

For each service port with endpoints it opens a relay listener on a free port
(TCP or UDP, see relay.py) and, when root, kernel rules send the service's
ClusterIP (and externalIPs / LoadBalancer ingress IPs) there: nat chains
KUBE-PORTALS-CONTAINER (from PREROUTING, traffic from pods and outside) and
KUBE-PORTALS-HOST (from OUTPUT, traffic from the node itself) REDIRECT to the
relay port, as kube-proxy's userspace mode did. NodePorts are listened on
directly. A service port without endpoints has no listener and a REJECT rule, so
clients are refused at once instead of being accepted and dropped. Without root
there are no kernel rules: NodePorts still work, ClusterIPs need root.

externalTrafficPolicy Local is honoured for the choice of endpoints (only this
node's) and, when root, for the source address too: the relay connects to the pod
from the client's own address, as transparent proxies do (transparent.py). Under
Cluster policy, and for clients inside the cluster CIDR, the pod sees the node's
address, as it did with kube-proxy's userspace mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from kubesvc.proxy.dataplanes.base import SyncResult
from kubesvc.proxy.dataplanes.iptables import Backend, _q, ensure_jumps
from kubesvc.proxy.dataplanes.relay import Balancer, TcpListener, TcpRelayEngine, UdpRelay
from kubesvc.proxy.dataplanes.transparent import SourceKeeper, ensure_local_delivery
from kubesvc.proxy.model import DesiredState, Endpoint, ServiceEntry, ServicePortName

log = logging.getLogger(__name__)

JUMPS = [
    ("nat", "PREROUTING", '-m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-CONTAINER'),
    ("nat", "OUTPUT", '-m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-HOST'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
]


class Listener:
    """One relay socket (TCP server or UDP endpoint) with its balancer."""

    def __init__(self, protocol: str, balancer: Balancer):
        self.protocol = protocol
        self.balancer = balancer
        self.tcp: TcpListener | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.port = 0

    async def open(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        if self.protocol == "TCP":
            # one engine per loop serves every TCP listener and connection (relay.py)
            self.tcp = TcpRelayEngine.of(loop).listen(host, port, self.balancer, backlog=4096)
            self.port = self.tcp.port
        elif self.protocol == "UDP":
            self.udp, _ = await loop.create_datagram_endpoint(lambda: UdpRelay(self.balancer),
                                                              local_addr=(host, port), reuse_port=False)
            self.port = self.udp.get_extra_info("sockname")[1]
        else:
            raise ValueError(f"userspace mode does not relay {self.protocol}")

    def close(self) -> None:
        # Closing the listener leaves accepted connections running to their end.
        if self.tcp is not None:
            self.tcp.close()
        if self.udp is not None:
            self.udp.close()


@dataclass
class _PortState:
    entry: ServiceEntry
    portal: Listener | None = None       # ClusterIP traffic (cluster endpoints)
    external: Listener | None = None     # externalIPs / LB IPs (external endpoints)
    nodeport: Listener | None = None     # NodePort (external endpoints)
    balancers: dict[str, Balancer] = field(default_factory=dict)


def _addrs(eps: tuple[Endpoint, ...]) -> list[tuple[str, int]]:
    return [(e.ip, e.port) for e in eps]


class UserspaceDataPlane:
    """Relays service traffic in this process; kernel REDIRECT rules when a Backend is given."""

    name = "userspace"

    def __init__(self, backend: Backend | None, listen_host: str = "0.0.0.0", cleanup_leftovers: bool = True,
                 cluster_cidr: str | None = "10.244.0.0/16"):
        self.backend = backend
        # externalTrafficPolicy Local: relay from the client's address (root only; transparent.py)
        self.source = SourceKeeper(cluster_cidr) if backend is not None else None
        self._local_delivery = False  # its kernel half (mangle rules, policy route) is in place
        self.cleanup_leftovers = cleanup_leftovers  # remove the iptables mode's rules before ours
        self.listen_host = listen_host
        self.ports: dict[ServicePortName, _PortState] = {}
        self._jumps_ok = False
        self.last_restore_input = ""

    async def _listener(self, st: _PortState, attr: str, kind: str, want: bool, port: int) -> None:
        cur: Listener | None = getattr(st, attr)
        if want and cur is None:
            lst = Listener(st.entry.port.protocol, st.balancers[kind])
            try:
                await lst.open(self.listen_host, port)
            except (OSError, ValueError) as err:
                log.warning("%s: cannot listen for %s on port %s: %s", st.entry.port.name, attr, port, err)
                return
            setattr(st, attr, lst)
        elif not want and cur is not None:
            cur.close()
            setattr(st, attr, None)

    async def sync(self, desired: DesiredState, *, full: bool = False) -> SyncResult:
        t0 = time.perf_counter()
        for spn in list(self.ports):
            if spn not in desired.services:
                st = self.ports.pop(spn)
                for lst in (st.portal, st.external, st.nodeport):
                    if lst:
                        lst.close()
        for spn, entry in desired.services.items():
            sp = entry.port
            if sp.protocol not in ("TCP", "UDP"):
                continue
            st = self.ports.get(spn)
            if st is None:
                st = self.ports[spn] = _PortState(entry, balancers={"cluster": Balancer(), "external": Balancer()})
            elif st.nodeport and st.entry.port.node_port != sp.node_port:
                st.nodeport.close()
                st.nodeport = None
            st.entry = entry
            st.balancers["cluster"].update(_addrs(entry.cluster_endpoints), sp.affinity_timeout)
            st.balancers["external"].update(_addrs(entry.external_endpoints), sp.affinity_timeout)
            st.balancers["external"].source = self.source if sp.external_policy_local else None
            has_int, has_ext = bool(entry.cluster_endpoints), bool(entry.external_endpoints)
            await self._listener(st, "portal", "cluster", has_int and self.backend is not None, 0)
            await self._listener(st, "external", "external",
                                 has_ext and self.backend is not None
                                 and bool(sp.external_ips or sp.load_balancer_ips), 0)
            await self._listener(st, "nodeport", "external", has_ext and bool(sp.node_port), sp.node_port)
        t1 = time.perf_counter()
        if self.backend is not None:
            await self._apply_rules()
        t2 = time.perf_counter()
        return SyncResult(full=True, services_written=len(self.ports), rules={},
                          compute_seconds=t1 - t0, apply_seconds=t2 - t1)

    def render(self) -> str:
        nat: list[str] = []
        filt: list[str] = []
        for spn in sorted(self.ports):
            st = self.ports[spn]
            sp = st.entry.port
            name, p = str(spn), sp.proto
            m = f"-m {p} -p {p}"
            if st.portal:
                for chain in ("KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST"):
                    nat.append(f"-A {chain} -m comment --comment {_q(name)} {m} -d {sp.cluster_ip} "
                               f"--dport {sp.port} -j REDIRECT --to-ports {st.portal.port}")
            else:
                filt.append(f"-A KUBE-SERVICES -m comment --comment {_q(name + ' has no endpoints')} {m} "
                            f"-d {sp.cluster_ip} --dport {sp.port} -j REJECT")
            for ip in (*sp.external_ips, *sp.load_balancer_ips):
                if st.external:
                    for chain in ("KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST"):
                        nat.append(f"-A {chain} -m comment --comment {_q(name + ' external IP')} {m} -d {ip} "
                                   f"--dport {sp.port} -j REDIRECT --to-ports {st.external.port}")
                else:
                    filt.append(f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {_q(name + ' has no endpoints')} "
                                f"{m} -d {ip} --dport {sp.port} -j REJECT")
        return "\n".join(["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", *filt, "COMMIT",
                          "*nat", ":KUBE-PORTALS-CONTAINER - [0:0]", ":KUBE-PORTALS-HOST - [0:0]", *nat,
                          "COMMIT"]) + "\n"

    async def _apply_rules(self) -> None:
        assert self.backend is not None
        if self.cleanup_leftovers:
            from kubesvc.proxy.dataplanes.cleanup import remove_leftovers
            await remove_leftovers(self.backend, "userspace")
            self.cleanup_leftovers = False
        text = self.render()
        if text != self.last_restore_input:
            rc, err = await self.backend.restore_noflush(text)
            if rc != 0:
                raise RuntimeError(f"{self.backend.restore}: {err[:2000]}")
            self.last_restore_input = text
        if not self._jumps_ok:
            await ensure_jumps(self.backend, JUMPS, strict=False)
            self._jumps_ok = True
        if not self._local_delivery and any(b.source for st in self.ports.values() for b in st.balancers.values()):
            try:
                await ensure_local_delivery(self.backend)
                self._local_delivery = True
            except (RuntimeError, OSError) as err:
                log.warning("externalTrafficPolicy Local: pods will see the node's address, not the "
                            "client's: %s", err)
                self._local_delivery = True  # said once; the relay falls back by itself

    async def close(self) -> None:
        for st in self.ports.values():
            for lst in (st.portal, st.external, st.nodeport):
                if lst:
                    lst.close()
        self.ports.clear()
