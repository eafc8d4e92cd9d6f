"""LoadBalancer IPAM: gives LoadBalancer services an ingress IP from --lb-pool, in the
manner of MetalLB's controller.

The pool is one or more ranges (a CIDR, or first-last). A service gets the IPs it asks
for (annotation kubesvc.io/loadBalancerIPs, comma-separated, else
spec.loadBalancerIP) when they are in the pool and free, else keeps what its status
already holds, else the lowest free address. Who holds what is read back from the
services' statuses, so a restart changes nothing. Deleting the service or changing
its type gives the address back (and clears the status). With no pool, an exhausted
pool or a refused request the service stays <pending> with a Warning event saying why.
Services with a spec.loadBalancerClass are some other implementation's.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from kubesvc.controllers.base import Controller, ControllerContext, is_not_found
from kubesvc.controllers.util import ns_name

log = logging.getLogger(__name__)

ANN_IPS = "kubesvc.io/loadBalancerIPs"


def parse_pool(spec: str | None) -> list[tuple[int, int]]:
    """'10.0.0.0/30,192.168.1.10-192.168.1.20' -> [(first, last)] as integers. A CIDR of
    more than 2 addresses leaves out its network and broadcast addresses."""
    ranges = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
            if a.version != b.version or int(b) < int(a):
                raise ValueError(f"invalid range {part!r}")
            ranges.append((int(a), int(b)))
        else:
            net = ipaddress.ip_network(part, strict=False)
            first, last = int(net.network_address), int(net.broadcast_address)
            if net.num_addresses > 2 and net.version == 4:
                first, last = first + 1, last - 1
            ranges.append((first, last))
    return ranges


class Pool:
    """Addresses of the pool and who holds each (service key)."""

    def __init__(self, spec: str | None):
        self.ranges = parse_pool(spec)
        self.owner: dict[str, tuple[str, str]] = {}

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def contains(self, ip: str) -> bool:
        try:
            n = int(ipaddress.ip_address(ip))
        except ValueError:
            return False
        return any(a <= n <= b for a, b in self.ranges)

    def holder(self, ip: str) -> tuple[str, str] | None:
        return self.owner.get(ip)

    def assign(self, ip: str, key: tuple[str, str]) -> None:
        self.owner[ip] = key

    def release_all(self, key: tuple[str, str]) -> list[str]:
        """Free what key holds; returns the freed addresses."""
        freed = [ip for ip, k in self.owner.items() if k == key]
        for ip in freed:
            del self.owner[ip]
        return freed

    def held_by(self, key: tuple[str, str]) -> list[str]:
        return sorted((ip for ip, k in self.owner.items() if k == key),
                      key=lambda s: int(ipaddress.ip_address(s)))

    def free(self) -> str | None:
        for a, b in self.ranges:
            for n in range(a, b + 1):
                ip = str(ipaddress.ip_address(n))
                if ip not in self.owner:
                    return ip
        return None


def requested_ips(svc: Any) -> list[str]:
    ann = (svc.metadata.annotations or {}).get(ANN_IPS)
    if ann:
        return [x.strip() for x in ann.split(",") if x.strip()]
    if svc.spec.loadBalancerIP:
        return [svc.spec.loadBalancerIP]
    return []


def status_ips(svc: Any) -> list[str]:
    lb = svc.status.loadBalancer if svc.status else None
    return [i.ip for i in ((lb.ingress if lb else None) or ()) if i.ip]


def is_ours(svc: Any) -> bool:
    return svc.spec is not None and svc.spec.type == "LoadBalancer" and not svc.spec.loadBalancerClass


class LoadBalancerController(Controller):
    """Assigns and releases LoadBalancer ingress IPs."""

    name = "service-lb-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.recorder = ctx.recorder.for_component("service-controller")
        self.pool = Pool(ctx.options.get("lb_pool"))
        self.writes = 0

    def setup(self) -> None:
        self.services = self.informers.view(Service)
        self.informers.informer(Service).add_handler(
            on_add=self._svc_added, on_update=self._svc_updated, on_delete=self._svc_deleted)

    def _svc_added(self, svc: Any) -> None:
        # Before workers start this rebuilds who holds what from the stored statuses.
        key = ns_name(svc)
        if is_ours(svc):
            for ip in status_ips(svc):
                if self.pool.contains(ip) and self.pool.holder(ip) is None:
                    self.pool.assign(ip, key)
            self.queue.add(key)
        elif status_ips(svc):
            self.queue.add(key)  # a left-over status to clear

    def _svc_updated(self, old: Any, new: Any) -> None:
        if (old.spec, old.metadata.annotations, old.status) != (new.spec, new.metadata.annotations, new.status):
            self.queue.add(ns_name(new))

    def _svc_deleted(self, svc: Any) -> None:
        # Only freed addresses can help a pending service: no walk over every service
        # (and no repeated AllocationFailed events) when one that held none goes.
        if self.pool.release_all(ns_name(svc)):
            self._retry_pending()

    def _retry_pending(self) -> None:
        """Addresses were freed: pending services may now get one."""
        for svc in self.services.list():
            if is_ours(svc) and not status_ips(svc):
                self.queue.add(ns_name(svc))

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.services.get(name, ns)
        if svc is None:
            self.pool.release_all(key)
            return
        if not is_ours(svc):
            had = self.pool.release_all(key)
            if svc.spec is not None and svc.spec.type != "LoadBalancer" and status_ips(svc):
                await self._write_status(svc, [])
            if had:
                self._retry_pending()
            return
        want, problem = self._choose(svc, key)
        if problem:
            self.recorder.warning(svc, "AllocationFailed", problem, api_version="v1", kind="Service")
        released = [ip for ip in self.pool.held_by(key) if ip not in want]
        for ip in released:
            del self.pool.owner[ip]
        for ip in want:
            self.pool.assign(ip, key)
        if status_ips(svc) != want:
            await self._write_status(svc, want)
            if want:
                self.recorder.normal(svc, "IPAllocated", f"Assigned IP {_go_list(want)}",
                                     api_version="v1", kind="Service")
        if released:
            self._retry_pending()

    def _choose(self, svc: Any, key: tuple[str, str]) -> tuple[list[str], str | None]:
        who = f'"{key[0]}/{key[1]}"'
        if not self.pool:
            return [], f"Failed to allocate IP for {who}: no address pool is configured (kubesvc controllers --lb-pool)"
        requested = requested_ips(svc)
        if requested:
            for ip in requested:
                if not self.pool.contains(ip):
                    return [], f"Failed to allocate IP for {who}: {ip} is not allowed in config"
                holder = self.pool.holder(ip)
                if holder is not None and holder != key:
                    return [], (f"Failed to allocate IP for {who}: can't change sharing key for {who}, "
                                f"address also in use by {holder[0]}/{holder[1]}")
            return requested, None
        held = [ip for ip in status_ips(svc) if self.pool.contains(ip) and self.pool.holder(ip) in (None, key)]
        if held:
            return held[:1], None
        held = self.pool.held_by(key)
        if held:
            return held[:1], None
        ip = self.pool.free()
        if ip is None:
            return [], f"Failed to allocate IP for {who}: no available IPs"
        return [ip], None

    async def _write_status(self, svc: Any, ips: list[str]) -> None:
        ingress = [{"ip": ip, "ipMode": "VIP"} for ip in ips]
        try:
            obj = await self.client.patch(Service.Status, svc.metadata.name,
                                          # merge patch: null removes the list
                                          {"status": {"loadBalancer": {"ingress": ingress or None}}},
                                          namespace=svc.metadata.namespace, patch_type=PatchType.MERGE)
        except Exception as err:
            if is_not_found(err):
                return
            raise
        self.writes += 1
        self.services.record(obj)


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(f'"{x}"' for x in items) + "]"
