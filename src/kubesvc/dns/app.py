"""One running DNS server: sockets, resolver, API feed, HTTP endpoints, wired together.

``DNSApp`` is what ``kubesvc dns`` runs; it owns start-up order (listen first so
clients get SERVFAIL rather than silence until the caches sync, as CoreDNS does
after its sync timeout) and shutdown.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from dataclasses import dataclass, field

import dns.name

from kubesvc.dns.answercache import AnswerCache
from kubesvc.dns.forward import Forwarder, parse_upstream, resolv_conf_upstreams
from kubesvc.dns.httpd import HTTPEndpoints, split_listen
from kubesvc.dns.metrics import Metrics
from kubesvc.dns.records import ClusterZone
from kubesvc.dns.server import Resolver, TCPServer, bind_sockets, udp_server

log = logging.getLogger("kubesvc.dns")


@dataclass
class DNSConfig:
    """The `kubesvc dns` flags."""

    listen: str = "0.0.0.0:53"
    zone: str = "cluster.local"
    upstreams: list[str] = field(default_factory=list)   # empty: /etc/resolv.conf
    ttl: int = 30
    pods: str = "insecure"
    health_listen: str | None = ":8080"
    ready_listen: str | None = ":8181"
    metrics_listen: str | None = ":9153"
    kubeconfig: str | None = None
    server: str | None = None


class DNSApp:
    """The cluster DNS server process."""

    def __init__(self, cfg: DNSConfig, client=None):
        self.cfg = cfg
        host, port = split_listen(cfg.listen, 53)
        self.host = host or "0.0.0.0"
        self.udp_sock, self.tcp_sock = bind_sockets(self.host, port)
        self.port = self.udp_sock.getsockname()[1]
        self.zone = ClusterZone(cfg.zone, ttl=cfg.ttl, pods=cfg.pods,
                                nameserver_ips=() if self.host in ("0.0.0.0", "::") else (self.host,))
        self.cache = AnswerCache()
        self.metrics = Metrics(f"dns://{cfg.listen}", self.zone.origin.to_text())
        self.metrics.answer_cache = self.cache
        self.metrics.fast_family = "2" if ":" in self.host else "1"
        ups = [parse_upstream(u) for u in (cfg.upstreams or resolv_conf_upstreams())]
        # The plain loop: an upstream that is this very address.
        ups = [u for u in ups if not (u[1] == self.port and u[0] in (self.host, "127.0.0.1" if self.host == "0.0.0.0" else self.host))]
        self.forwarder = Forwarder(ups, metrics=self.metrics)
        self.client = client
        self.feeder = None
        self.resolver = Resolver(self.zone, self.cache, self.forwarder, self.metrics, synced=self._synced)
        self.udp = udp_server(self.resolver, self.udp_sock)
        self.tcp = TCPServer(self.resolver, self.tcp_sock)
        self.http = HTTPEndpoints(self._synced, self.metrics.registry, cfg.health_listen, cfg.ready_listen,
                                  cfg.metrics_listen)

    def _synced(self) -> bool:
        return self.feeder is None or self.feeder.synced

    def on_change(self, deps: set) -> None:
        self.cache.invalidate(deps)
        # A cluster IP that the forwarder answered for before (PTR fallthrough) now is ours.
        for d in deps:
            if d[0] == "ip":
                try:
                    self.forwarder.drop(dns.reversename.from_address(d[1]))
                except Exception:
                    pass

    async def start(self) -> None:
        from kubesvc.client import make_client
        from kubesvc.dns.sources import ZoneFeeder
        self.udp.start()
        await self.tcp.start()
        await self.http.start()
        if self.client is None:
            self.client = make_client(self.cfg.kubeconfig, self.cfg.server, field_manager="kubesvc-dns")
        self.feeder = ZoneFeeder(self.client, self.zone, self.on_change)
        self.feeder.start()
        loop = asyncio.get_running_loop()
        loop.create_task(self.forwarder.detect_loops(self.zone.origin))
        loop.create_task(self._after_sync())
        log.info("serving %s on %s:%d (udp+tcp), forwarding to %s", self.zone.origin, self.host, self.port,
                 ", ".join(u.label for u in self.forwarder.upstreams) or "nobody")

    async def _after_sync(self) -> None:
        """Give back the memory the initial lists needed, once they are digested."""
        await self.feeder.wait_synced()
        await asyncio.sleep(0.5)
        gc.collect()
        # The first list of every Service and EndpointSlice is parsed whole; those
        # megabytes are free now but glibc keeps them until asked.
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass
        # The zone's objects live as long as the process: keep the cyclic GC from walking
        # them again and again (a full pass over 10k services is tens of ms, a stall).
        gc.freeze()
        log.info("caches synced: %d services, %d namespaces", len(self.zone.services), len(self.zone.namespaces))

    async def stop(self) -> None:
        if self.feeder:
            await self.feeder.stop()
        await self.forwarder.close()
        self.udp.close()
        await self.tcp.close()
        await self.http.stop()


import dns.reversename  # noqa: E402  (used in on_change)
