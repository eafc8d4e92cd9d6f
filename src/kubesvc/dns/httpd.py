"""The DNS server's HTTP side: /health (:8080), /ready (:8181) and /metrics (:9153), as CoreDNS serves them.

/health answers "OK" while the process runs (CoreDNS's health plugin); /ready
answers 200 once the API caches have synced and 503 before (the ready plugin);
/metrics is the Prometheus text format of ``Metrics.registry``.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def split_listen(text: str, default_port: int) -> tuple[str, int]:
    """":8080" / "ADDR:PORT" / "[V6]:PORT" -> (host, port); an empty host means all addresses."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host, int(port or default_port)
    host, _, port = text.rpartition(":")
    if not _:
        return text, default_port
    return host, int(port or default_port)


class HTTPEndpoints:
    """One aiohttp runner with a site per distinct listen address."""

    def __init__(self, ready: Callable[[], bool], registry, health_listen: str | None,
                 ready_listen: str | None, metrics_listen: str | None):
        self.ready = ready
        self.registry = registry
        self.listens = {"health": health_listen, "ready": ready_listen, "metrics": metrics_listen}
        self.runners: list[web.AppRunner] = []

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _ready(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="OK")
        return web.Response(status=503, text="kubernetes caches not synced")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        routes = {"health": ("/health", self._health, 8080), "ready": ("/ready", self._ready, 8181),
                  "metrics": ("/metrics", self._metrics, 9153)}
        # Endpoints sharing one address share one site.
        by_addr: dict[tuple[str, int], list[str]] = {}
        for what, listen in self.listens.items():
            if not listen:
                continue
            by_addr.setdefault(split_listen(listen, routes[what][2]), []).append(what)
        for (host, port), whats in by_addr.items():
            app = web.Application()
            for what in whats:
                path, handler, _ = routes[what]
                app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host or None, port).start()
            self.runners.append(runner)

    async def stop(self) -> None:
        for r in self.runners:
            await r.cleanup()
