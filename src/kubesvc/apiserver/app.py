"""The API server process: wires the store, watch cache, registry, handlers,
discovery, health endpoints and in-process controllers into one aiohttp app.

Owns start-up (open the store, fill the watch cache, create the system
namespaces and the built-in objects, repair allocations) and shut-down.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from dataclasses import dataclass

from aiohttp import web

from kubesvc.apiserver import codec, discovery
from kubesvc.apiserver.gc import GarbageCollector
from kubesvc.apiserver.handlers import Handlers, not_found_path
from kubesvc.apiserver.rest import Registry
from kubesvc.apiserver.watchcache import WatchCache
from kubesvc.objects import kinds  # noqa: F401  (registers every kind's strategy)
from kubesvc.objects.errors import StatusError
from kubesvc.objects.registry import by_kind
from kubesvc.store.base import Store

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class Config:
    """What `kubesvc apiserver` is started with."""

    data_dir: str
    host: str = "127.0.0.1"
    port: int = 6443
    store: str = "sqlite"
    etcd_endpoints: str = ""
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    advertise_address: str = ""
    watch_history: int = 20000
    event_ttl: float = 3600.0


def _interface_ipv4(name: str) -> str | None:
    """An interface's IPv4 address (SIOCGIFADDR), or None when it has none."""
    import fcntl
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


def host_address() -> str:
    """This host's address as kube-apiserver's ChooseHostInterface picks it: the
    interface of the IPv4 default route, else the first non-loopback address, else
    127.0.0.1. Read from /proc and ioctls (no netlink: pyroute2 cannot run under uvloop)."""
    try:
        with open("/proc/net/route") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        default = [r[0] for r in rows if len(r) > 2 and r[1] == "00000000"]
        names = default + [n for _, n in socket.if_nameindex() if n not in default]
    except OSError:
        return "127.0.0.1"
    for name in names:
        ip = _interface_ipv4(name)
        if ip and not ip.startswith("127."):
            return ip
    return "127.0.0.1"


def advertise_address(cfg: Config) -> str:
    """The address in the kubernetes Endpoints: --advertise-address, else the listen
    host unless it is a wildcard (0.0.0.0, ::), else the host's own address."""
    if cfg.advertise_address:
        return cfg.advertise_address
    if cfg.host and cfg.host not in ("0.0.0.0", "::"):
        return cfg.host
    return host_address()


def make_store(cfg: Config) -> Store:
    if cfg.store == "sqlite":
        from kubesvc.store.sqlite import SQLiteStore
        return SQLiteStore(os.path.join(cfg.data_dir, "state.db"), history=cfg.watch_history)
    if cfg.store == "etcd":
        from kubesvc.store.etcd import EtcdStore
        if not cfg.etcd_endpoints:
            raise SystemExit("--store etcd needs --etcd-endpoints URL[,URL...]")
        return EtcdStore(cfg.etcd_endpoints.split(","), history=cfg.watch_history)
    raise SystemExit(f"unknown store {cfg.store!r} (sqlite or etcd)")


class APIServer:
    """One running API server."""

    def __init__(self, cfg: Config, store: Store | None = None):
        self.cfg = cfg
        self.store = store or make_store(cfg)
        self.cache = WatchCache(self.store, window=cfg.watch_history)
        self.registry = Registry(self.store, self.cache)
        self.handlers = Handlers(self.registry, self.cache)
        self.gc = GarbageCollector(self.registry, self.cache, event_ttl=cfg.event_ttl)
        self.ready = False
        self.app = self._make_app()

    # -- app -------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[_metrics, _errors])
        r = app.router
        for path in ("/healthz", "/livez"):
            r.add_get(path, self._health)
            r.add_get(path + "/{check:.*}", self._health)
        r.add_get("/readyz", self._readyz)
        r.add_get("/readyz/{check:.*}", self._readyz)
        r.add_get("/version", self._version)
        r.add_get("/version/", self._version)
        r.add_get("/api", self._api)
        r.add_get("/api/", self._api)
        r.add_get("/apis", self._apis)
        r.add_get("/apis/", self._apis)
        r.add_get("/api/v1", self._core_v1)
        r.add_get("/api/v1/", self._core_v1)
        r.add_get("/apis/{group}", self._group)
        r.add_get("/apis/{group}/", self._group)
        r.add_get("/apis/{group}/{version}", self._group_version)
        r.add_get("/apis/{group}/{version}/", self._group_version)
        r.add_get("/metrics", self._metrics)
        try:
            from kubesvc.apiserver import openapi
            app.add_routes(openapi.routes())
        except ImportError:
            log.info("openapi is not available in this build")
        r.add_route("*", "/api/{tail:.+}", self.handlers.handle)
        r.add_route("*", "/apis/{tail:.+}", self.handlers.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        await self.start()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.stop()

    async def start(self) -> None:
        t0 = time.perf_counter()
        await self.store.start()
        t1 = time.perf_counter()
        await self.cache.start()
        t2 = time.perf_counter()
        log.info("store opened in %.2fs; watch cache loaded at revision %d in %.2fs", t1 - t0, self.cache.rev,
                 t2 - t1)
        # The cache holds every object as plain dicts (no cycles): keep them out of
        # the cyclic collector's full passes, which otherwise stall requests for
        # hundreds of milliseconds at 10,000 objects.
        gc.freeze()
        await self._bootstrap()
        try:
            from kubesvc.apiserver import openapi
            if hasattr(openapi, "warm"):
                # Built in the background (so that the first kubectl apply does not wait
                # for them) without holding up readiness.
                asyncio.get_running_loop().run_in_executor(None, openapi.warm)
        except ImportError:
            pass
        self.gc.start()
        self._freezer = asyncio.create_task(self._freeze_loop())
        self.ready = True
        log.info("apiserver ready at revision %d", self.cache.rev)

    async def _freeze_loop(self) -> None:
        """Keep what has lived a while out of the cyclic collector's full passes.

        The cache grows with every object written; without this a full collection
        walks all of it (0.5 s at 10,000 pods on a busy machine) whenever a quarter
        more objects have appeared, which shows up as p99 latency.
        """
        n = 0
        while True:
            await asyncio.sleep(10)
            n += 1
            if n % 60 == 0:
                # Every 10 minutes, one full pass over everything: frees cycles that
                # were frozen while still in use (finished watches, requests).
                gc.unfreeze()
                gc.collect()
            else:
                gc.collect(1)  # young cycles (request plumbing) are collected, not frozen
            gc.freeze()

    async def stop(self) -> None:
        self.ready = False
        if getattr(self, "_freezer", None):
            self._freezer.cancel()
        await self.gc.stop()
        await self.cache.stop()
        await self.store.close()

    async def _bootstrap(self) -> None:
        ns_rt = by_kind("", "Namespace")
        for name in SYSTEM_NAMESPACES:
            if self.cache.get(ns_rt, None, name) is None:
                await self._create_if_absent(ns_rt, None, {"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": name}})
        try:
            from kubesvc.apiserver import services
        except ImportError:
            log.info("service admission is not available in this build")
            return
        adm = services.ServiceAdmission(self.cfg.service_cluster_ip_range, self.cfg.service_node_port_range)
        svc_rt = by_kind("", "Service")
        for msg in adm.repair(self.cache.list(svc_rt)) or []:
            log.warning("service allocation repair: %s", msg)
        self.registry.admission[("", "Service")] = adm
        host = advertise_address(self.cfg)
        for obj in services.builtin_objects(host, self.cfg.port):
            api_version, kind = obj.get("apiVersion", "v1"), obj.get("kind", "")
            group = api_version.rpartition("/")[0]
            rt = by_kind(group, kind)
            if rt is None:
                continue
            md = obj.get("metadata") or {}
            cur = self.cache.get(rt, md.get("namespace"), md.get("name", ""))
            if cur is None:
                await self._create_if_absent(rt, md.get("namespace"), obj)
            elif kind in ("Endpoints", "EndpointSlice"):
                await self._reconcile_endpoints(rt, cur, obj)

    async def _reconcile_endpoints(self, rt, cur: dict, want: dict) -> None:
        """The kubernetes service's endpoints follow this server's address and port across
        restarts, as kube-apiserver's endpoint reconciler rewrites them at start-up."""
        fields = ("subsets",) if rt.kind == "Endpoints" else ("addressType", "endpoints", "ports")
        if all(cur.get(f) == want.get(f) for f in fields):
            return

        def fn(obj: dict) -> dict:
            for f in fields:
                obj[f] = want[f]
            return obj
        md = cur["metadata"]
        try:
            await self.registry.guaranteed_update(rt, md.get("namespace"), md["name"], fn, manager="kube-apiserver")
        except StatusError as err:
            log.error("could not update %s %s: %s", rt.kind, md["name"], err.message)

    async def _create_if_absent(self, rt, namespace, obj) -> None:
        try:
            await self.registry.create(rt, namespace, obj, manager="kube-apiserver")
        except StatusError as err:
            if err.code != 409:
                log.error("could not create %s %s: %s", rt.kind, obj.get("metadata", {}).get("name"), err.message)

    # -- simple endpoints --------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        if "verbose" in request.query:
            return web.Response(text="[+]ping ok\n[+]log ok\n[+]etcd ok\nhealthz check passed\n")
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=500, text="[-]informer-sync failed: not ready\nreadyz check failed\n")
        if "verbose" in request.query:
            return web.Response(text="[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]informer-sync ok\nreadyz check passed\n")
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return codec.response(discovery.VERSION)

    def _server_address(self, request: web.Request) -> str:
        return request.host or f"{self.cfg.host}:{self.cfg.port}"

    def _aggregated(self, request: web.Request) -> str | None:
        mt = codec.wants(request, "APIGroupDiscoveryList", "apidiscovery.k8s.io")
        if mt and mt.params.get("v") in ("v2", "v2beta1"):
            return mt.params["v"]
        return None

    async def _api(self, request: web.Request) -> web.Response:
        v = self._aggregated(request)
        if v:
            return codec.response(discovery.aggregated(True, v), content_type=discovery.aggregated_content_type(v),
                                  headers={"Vary": "Accept"})
        return codec.response(discovery.api_versions(self._server_address(request)), headers={"Vary": "Accept"})

    async def _apis(self, request: web.Request) -> web.Response:
        v = self._aggregated(request)
        if v:
            return codec.response(discovery.aggregated(False, v), content_type=discovery.aggregated_content_type(v),
                                  headers={"Vary": "Accept"})
        return codec.response(discovery.api_group_list(), headers={"Vary": "Accept"})

    async def _core_v1(self, request: web.Request) -> web.Response:
        return codec.response(discovery.api_resource_list("", "v1"))

    async def _group(self, request: web.Request) -> web.Response:
        g = discovery.api_group(request.match_info["group"])
        if g is None:
            return codec.error_response(not_found_path())
        return codec.response(g)

    async def _group_version(self, request: web.Request) -> web.Response:
        d = discovery.api_resource_list(request.match_info["group"], request.match_info["version"])
        if d is None:
            return codec.error_response(not_found_path())
        return codec.response(d)

    async def _metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import REGISTRY, generate_latest
        body = generate_latest(REGISTRY)
        body += (f"# TYPE kubesvc_apiserver_revision gauge\nkubesvc_apiserver_revision {self.cache.rev}\n"
                 f"# TYPE kubesvc_apiserver_watchers gauge\nkubesvc_apiserver_watchers "
                 f"{self.cache.watcher_count}\n").encode()
        return web.Response(body=body, content_type="text/plain")


try:
    from prometheus_client import Counter, Histogram
    _REQUESTS = Counter("apiserver_request_total", "API requests by verb and HTTP code.", ["verb", "code"])
    _LATENCY = Histogram("apiserver_request_duration_seconds", "API request latency (watches excluded).",
                         ["verb"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
except ImportError:  # pragma: no cover
    _REQUESTS = _LATENCY = None


def _verb(request: web.Request) -> str:
    m = request.method
    if m == "GET" and request.query.get("watch") in ("true", "1"):
        return "WATCH"
    return m


@web.middleware
async def _metrics(request: web.Request, handler):
    if _REQUESTS is None:
        return await handler(request)
    verb = _verb(request)
    t = time.perf_counter()
    code = 500
    try:
        resp = await handler(request)
        code = resp.status
        return resp
    finally:
        _REQUESTS.labels(verb, str(code)).inc()
        if verb != "WATCH":
            _LATENCY.labels(verb).observe(time.perf_counter() - t)


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except StatusError as err:
        return codec.error_response(err)
    except web.HTTPNotFound:
        return codec.error_response(not_found_path())
    except web.HTTPMethodNotAllowed:
        return codec.error_response(StatusError(405, "MethodNotAllowed",
                                                "the server does not allow this method on the requested resource"))
    except web.HTTPException:
        raise
    except ConnectionResetError:
        # The client went away mid-request: nobody to answer, nothing to log.
        return web.Response(status=499)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        log.exception("%s %s failed", request.method, request.path_qs)
        return codec.error_response(StatusError(500, "InternalError", f"Internal error occurred: {err}"))


def run(cfg: Config) -> None:
    """Serve until SIGTERM/SIGINT."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    # Fewer cyclic-GC passes: request handling allocates many short-lived acyclic
    # dicts that reference counting frees anyway.
    gc.set_threshold(50_000, 20, 100)
    server = APIServer(cfg)
    access = logging.getLogger("aiohttp.access")
    web.run_app(server.app, host=cfg.host, port=cfg.port, print=None,
                access_log=access if access.isEnabledFor(logging.DEBUG) else None,
                handle_signals=True, shutdown_timeout=2)
