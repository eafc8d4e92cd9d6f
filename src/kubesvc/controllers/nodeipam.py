"""Node IPAM: gives each node a spec.podCIDR (a /24 by default) from --cluster-cidr, as
kube-controller-manager's range allocator does.

What is allocated is read back from the nodes themselves (their stored podCIDRs),
so a restart hands out nothing twice and moves nothing: allocation state lives in
the API, not in this process. A node keeps its CIDR for life (the field is
write-once); a deleted node's CIDR is free again.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from kubesvc.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)


class CIDRSet:
    """The /mask subnets of a cluster CIDR, handed out lowest free first."""

    def __init__(self, cluster_cidr: str, mask: int):
        self.net = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask < self.net.prefixlen:
            raise ValueError(f"--node-cidr-mask-size {mask} is larger than the cluster CIDR {cluster_cidr}")
        self.mask = mask
        self.size = 1 << (mask - self.net.prefixlen)
        self.used: set[int] = set()
        self._next = 0

    def index_of(self, cidr: str) -> int | None:
        try:
            sub = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if sub.prefixlen != self.mask or not sub.subnet_of(self.net):  # type: ignore[arg-type]
            return None
        return (int(sub.network_address) - int(self.net.network_address)) >> (self.net.max_prefixlen - self.mask)

    def cidr_at(self, i: int) -> str:
        base = int(self.net.network_address) + (i << (self.net.max_prefixlen - self.mask))
        return str(ipaddress.ip_network((base, self.mask)))

    def occupy(self, cidr: str) -> bool:
        i = self.index_of(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def release(self, cidr: str) -> None:
        i = self.index_of(cidr)
        if i is not None:
            self.used.discard(i)

    def allocate(self) -> str | None:
        for i in range(self.size):
            if i not in self.used:
                self.used.add(i)
                return self.cidr_at(i)
        return None


class NodeIPAMController(Controller):
    """Assigns spec.podCIDR(s) to nodes that have none."""

    name = "node-ipam-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.recorder = ctx.recorder.for_component("cidrAllocator")
        opts = ctx.options
        self.cidrs = CIDRSet(opts.get("cluster_cidr") or "10.244.0.0/16", int(opts.get("node_cidr_mask_size") or 24))
        self.writes = 0

    def setup(self) -> None:
        self.nodes = self.informers.view(Node)
        self.informers.informer(Node).add_handler(
            on_add=self._node_event, on_update=lambda _o, n: self._node_event(n), on_delete=self._node_deleted)

    def _node_event(self, node: Any) -> None:
        for c in node_cidrs(node):
            self.cidrs.occupy(c)
        if not node_cidrs(node):
            self.queue.add(("", node.metadata.name))

    def _node_deleted(self, node: Any) -> None:
        for c in node_cidrs(node):
            self.cidrs.release(c)

    async def sync(self, key: tuple[str, str]) -> None:
        node = self.nodes.get(key[1])
        if node is None or node_cidrs(node):
            return
        cidr = self.cidrs.allocate()
        if cidr is None:
            self.recorder.normal(node, "CIDRNotAvailable",
                                 f"Node {node.metadata.name} status is now: CIDRNotAvailable",
                                 api_version="v1", kind="Node")
            return
        try:
            obj = await self.client.patch(Node, node.metadata.name,
                                          {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
                                          patch_type=PatchType.MERGE)
        except Exception:
            self.cidrs.release(cidr)
            raise
        self.writes += 1
        self.nodes.record(obj)
        log.info("node %s: podCIDR %s", node.metadata.name, cidr)


def node_cidrs(node: Any) -> list[str]:
    spec = node.spec
    if spec is None:
        return []
    return list(spec.podCIDRs or ([spec.podCIDR] if spec.podCIDR else []))
