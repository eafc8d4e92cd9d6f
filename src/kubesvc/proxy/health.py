"""kube-proxy's HTTP endpoints: /healthz and /livez (:10256), /metrics (:10249), and
the per-service healthCheckNodePort servers that external load balancers probe.

/healthz answers 200 while syncs keep up (nothing queued longer than twice the
sync period went unsynced) and 503 otherwise, with kube-proxy's JSON body. A
healthCheckNodePort answers 200 when this node has local endpoints for the
service and 503 when it has none, so a load balancer sends traffic only to nodes
that can serve it under externalTrafficPolicy Local.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubesvc.proxy.metrics import ProxyMetrics

log = logging.getLogger(__name__)


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SyncHealth:
    """What /healthz judges: when a change was queued and when rules were last synced."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.last_updated = 0.0
        self.oldest_queued: float | None = None

    def queued(self) -> None:
        if self.oldest_queued is None:
            self.oldest_queued = time.time()

    def updated(self) -> None:
        self.last_updated = time.time()
        self.oldest_queued = None

    def healthy(self) -> bool:
        if self.last_updated == 0.0:
            return False
        return self.oldest_queued is None or time.time() - self.oldest_queued < self.timeout


async def _start(app: web.Application, bind: str) -> web.AppRunner:
    host, _, port = bind.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port), reuse_address=True).start()
    return runner


async def serve_healthz(bind: str, health: SyncHealth) -> web.AppRunner:
    async def handler(request: web.Request) -> web.Response:
        now = time.time()
        ok = health.healthy()
        body = {"lastUpdated": _ts(health.last_updated) if health.last_updated else "",
                "currentTime": _ts(now), "nodeEligible": True}
        return web.Response(body=orjson.dumps(body), status=200 if ok else 503,
                            content_type="application/json",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/healthz", handler)
    app.router.add_get("/livez", handler)
    return await _start(app, bind)


async def serve_metrics(bind: str, metrics: ProxyMetrics, mode: str) -> web.AppRunner:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def proxy_mode(request: web.Request) -> web.Response:
        return web.Response(text=mode)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", handler)
    app.router.add_get("/proxyMode", proxy_mode)  # kube-proxy serves this on the metrics port too
    app.router.add_get("/healthz", healthz)
    return await _start(app, bind)


class HealthCheckNodePorts:
    """One tiny HTTP server per healthCheckNodePort, answering with the local endpoint count."""

    def __init__(self, host: str = "0.0.0.0"):
        self.host = host
        self.servers: dict[int, web.AppRunner] = {}
        self.counts: dict[int, tuple[str, str, int]] = {}  # port -> (namespace, name, local endpoints)

    async def sync(self, wanted: dict[int, tuple[str, str, int]]) -> None:
        self.counts = dict(wanted)
        for port in list(self.servers):
            if port not in wanted:
                await self.servers.pop(port).cleanup()
        for port in wanted:
            if port not in self.servers:
                try:
                    self.servers[port] = await _start(self._app(port), f"{self.host}:{port}")
                except OSError as err:
                    log.warning("healthCheckNodePort %s: %s", port, err)

    def _app(self, port: int) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            ns, name, n = self.counts.get(port, ("", "", 0))
            body = {"service": {"namespace": ns, "name": name}, "localEndpoints": n,
                    "serviceProxyHealthy": True}
            return web.Response(body=orjson.dumps(body), status=200 if n else 503,
                                content_type="application/json",
                                headers={"X-Content-Type-Options": "nosniff",
                                         "X-Load-Balancing-Endpoint-Weight": str(n)})

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        return app

    async def close(self) -> None:
        for r in self.servers.values():
            await r.cleanup()
        self.servers.clear()
