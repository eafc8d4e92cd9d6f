"""The proxy process: informers → change tracker → rate-limited syncs of one data plane.

The sync loop is kube-proxy's bounded-frequency runner: a change queues a sync
that runs no sooner than --min-sync-period after the previous one began (so a
burst of changes costs one sync), and a sync runs at least every --sync-period
even without changes, rewriting everything to repair drift. On a slow backend
(iptables-nft with many services) a forced full rewrite is spaced to at least
ten times its own duration so repairing drift never starves real changes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lightkube.resources.core_v1 import Node, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.client import Informer
from kubesvc.proxy.conntrack import ConntrackCleaner
from kubesvc.proxy.dataplanes.base import DataPlane
from kubesvc.proxy.health import HealthCheckNodePorts, SyncHealth, serve_healthz, serve_metrics
from kubesvc.proxy.metrics import ProxyMetrics
from kubesvc.proxy.model import ServiceEntry, ServicePortName
from kubesvc.proxy.tracker import ChangeTracker

log = logging.getLogger(__name__)


class ProxyServer:
    """Runs one node's service proxy until cancelled."""

    def __init__(self, client, dataplane: DataPlane, *, node_name: str, node_ips: tuple[str, ...] = (),
                 min_sync_period: float = 1.0, sync_period: float = 30.0,
                 healthz_bind: str | None = "0.0.0.0:10256", metrics_bind: str | None = "127.0.0.1:10249",
                 conntrack: bool = True):
        self.client = client
        self.dataplane = dataplane
        self.min_sync_period = min_sync_period
        self.sync_period = sync_period
        self.healthz_bind, self.metrics_bind = healthz_bind, metrics_bind
        self._wake = asyncio.Event()
        self.tracker = ChangeTracker(node_name, node_ips, on_change=self._queue)
        self._fixed_node_ips = bool(node_ips)
        self.metrics = ProxyMetrics()
        self.health = SyncHealth(timeout=2 * sync_period)
        self.hc_ports = HealthCheckNodePorts()
        self.conntrack = ConntrackCleaner() if conntrack else None
        self._applied: dict[ServicePortName, ServiceEntry] = {}
        self._last_full = 0.0
        self._full_cost = 0.0
        self.syncs = 0

    def _queue(self) -> None:
        self.metrics.last_queued.set_to_current_time()
        self.health.queued()
        self._wake.set()

    async def run(self) -> None:
        services = Informer(self.client, Service)
        slices = Informer(self.client, EndpointSlice)
        nodes = Informer(self.client, Node)
        services.add_handler(**self.tracker.handlers("service"))
        slices.add_handler(**self.tracker.handlers("slice"))
        if not self._fixed_node_ips:
            node_h = self.tracker.handlers("node")
            mine = lambda n: n.metadata.name == self.tracker.node_name  # noqa: E731
            nodes.add_handler(on_add=lambda n: mine(n) and node_h["on_add"](n),
                              on_update=lambda o, n: mine(n) and node_h["on_add"](n))
        runners = []
        if self.healthz_bind:
            runners.append(await serve_healthz(self.healthz_bind, self.health))
        if self.metrics_bind:
            runners.append(await serve_metrics(self.metrics_bind, self.metrics, self.dataplane.name))
        tasks = [services.start(), slices.start()]
        if not self._fixed_node_ips:
            tasks.append(nodes.start())
        try:
            # Never program an empty picture from half a listing: wait for both.
            await services.wait_synced()
            await slices.wait_synced()
            log.info("informers synced: %d services, %d endpointslices", len(services), len(slices))
            await self._loop()
        finally:
            for inf in (services, slices, nodes):
                await inf.stop()
            for r in runners:
                await r.cleanup()
            await self.hc_ports.close()
            await self.dataplane.close()

    async def _loop(self) -> None:
        last_start = 0.0
        while True:
            wait = self.sync_period - (time.monotonic() - last_start)
            if wait > 0 and not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            gap = self.min_sync_period - (time.monotonic() - last_start)
            if gap > 0:
                await asyncio.sleep(gap)
            self._wake.clear()
            last_start = time.monotonic()
            await self.sync_once()

    async def sync_once(self) -> None:
        periodic = not self.tracker.has_changes
        full = periodic and (time.monotonic() - self._last_full) >= max(self.sync_period, 10 * self._full_cost)
        desired = self.tracker.desired()
        pending = self.tracker.take_pending()
        t0 = time.perf_counter()
        try:
            result = await self.dataplane.sync(desired, full=full)
        except Exception as err:
            log.error("sync failed: %s", err)
            self.metrics.restore_failures.inc()
            # retry after min-sync-period; the data plane rewrites everything next time
            self._wake.set()
            return
        took = time.perf_counter() - t0
        self.syncs += 1
        now = time.time()
        self.metrics.sync_duration.observe(took)
        (self.metrics.full_sync_duration if result.full else self.metrics.partial_sync_duration).observe(took)
        if result.full:
            self._last_full = time.monotonic()
            self._full_cost = took
        self.metrics.last_sync.set(now)
        for table, n in result.rules.items():
            self.metrics.iptables_rules.labels(table=table).set(n)
        for t in pending:
            self.metrics.programming.observe(max(0.0, now - t))
        self.metrics.service_changes.inc(len(desired.changed or ()))
        self.health.updated()
        self.metrics.no_local_endpoints.labels(traffic_policy="External").set(sum(
            1 for e in desired.services.values() if e.port.external_policy_local and not e.endpoints.local))
        self.metrics.no_local_endpoints.labels(traffic_policy="Internal").set(sum(
            1 for e in desired.services.values() if e.port.internal_policy_local and not e.endpoints.local))
        await self.hc_ports.sync({e.port.health_check_node_port: (e.port.name.namespace, e.port.name.name,
                                                                   len(e.endpoints.local))
                                  for e in desired.services.values() if e.port.health_check_node_port})
        if self.conntrack is not None and self.dataplane.name != "userspace":
            await self.conntrack.cleanup(self._applied, desired.services)
        self._applied = desired.services
        log.info("synced %s: %d service ports (%s, %.1f ms: compute %.1f, apply %.1f)",
                 self.dataplane.name, len(desired.services), "full" if result.full else "partial",
                 took * 1000, result.compute_seconds * 1000, result.apply_seconds * 1000)
