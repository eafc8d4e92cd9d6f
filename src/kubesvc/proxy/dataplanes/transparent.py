"""Relayed connections that keep the client's address (userspace mode, externalTrafficPolicy Local).

A relay normally connects to the endpoint from the node's own address, so the pod
sees the node. Under externalTrafficPolicy: Local users expect the client's address
(that is the point of the policy), and the userspace mode can give it the way
transparent proxies do (HAProxy's ``usesrc clientip``):

* the upstream socket gets ``IP_TRANSPARENT`` and is bound to the client's address
  before it connects, so the pod sees the client;
* the pod answers that address through its default route, the node; in the mangle
  table's PREROUTING, a packet belonging to such a socket (``-m socket
  --transparent``) gets the mark 0x200, and a policy route sends marked packets to
  the local stack (``ip rule fwmark 0x200/0x200 lookup 27507``, table 27507 holding
  ``local 0.0.0.0/0 dev lo``), where the socket receives them.

It needs root (CAP_NET_ADMIN), and a client that can reach the endpoint without
the node, i.e. not a pod on the node's own bridge (the endpoint would answer it
directly and the connection would never complete): clients inside the cluster CIDR
are relayed from the node's address, as are loopback clients.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from kubesvc.proxy.dataplanes.iptables import Backend, ensure_jumps

log = logging.getLogger(__name__)

IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
MARK = 0x200
ROUTE_TABLE = 27507  # "ks"
CHAIN = "KUBE-RELAY-REPLIES"
JUMPS = [("mangle", "PREROUTING",
          f'-m comment --comment "replies to relayed connections keeping the client address" -j {CHAIN}')]


def mangle_rules() -> str:
    """Restore input for the mangle chain marking packets of transparent relay sockets."""
    return "\n".join(["*mangle", f":{CHAIN} - [0:0]",
                      *(f"-A {CHAIN} -p {p} -m socket --transparent -j MARK --or-mark {MARK:#x}"
                        for p in ("tcp", "udp")),
                      "COMMIT"]) + "\n"


async def ensure_local_delivery(backend: Backend) -> None:
    """The mangle rules and the policy route; idempotent. Raises with the tool's words."""
    rc, err = await backend.restore_noflush(mangle_rules())
    if rc != 0:
        raise RuntimeError(f"{backend.restore} ({CHAIN}): {err[:2000]}")
    await ensure_jumps(backend, JUMPS)
    await asyncio.to_thread(_ensure_policy_route)


def _ensure_policy_route() -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    with IPRoute() as ipr:
        if not any(r.get_attr("FRA_TABLE") == ROUTE_TABLE for r in ipr.get_rules(family=socket.AF_INET)):
            ipr.rule("add", family=socket.AF_INET, fwmark=MARK, fwmask=MARK, table=ROUTE_TABLE)
        lo = ipr.link_lookup(ifname="lo")[0]
        try:
            ipr.route("add", dst="0.0.0.0/0", type="local", scope="host", oif=lo, table=ROUTE_TABLE)
        except NetlinkError as err:
            if err.code != 17:  # EEXIST: already there
                raise


class SourceKeeper:
    """Whether a relay connects from the client's address, and the binding that does it."""

    def __init__(self, cluster_cidr: str | None):
        self.cluster = ipaddress.ip_network(cluster_cidr) if cluster_cidr else None
        self._warned = False

    def applies(self, client_ip: str) -> bool:
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return ip.version == 4 and not ip.is_loopback and not (self.cluster and ip in self.cluster)

    def bind(self, sock: socket.socket, client_ip: str) -> None:
        """Bind an unconnected socket to the client's address (any port); on failure it stays
        unbound and connects from the node's address, said once in the log."""
        try:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            sock.bind((client_ip, 0))
        except OSError as err:
            if not self._warned:
                self._warned = True
                log.warning("cannot relay from client addresses (%s): pods see the node's address", err)
