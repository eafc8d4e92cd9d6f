"""Informer: a local cache of one resource kept true by list+watch, with event handlers.

The same contract as client-go's shared informer, cut to what kubesvc needs:
list once, then watch from the list's resourceVersion; on a broken watch resume
from the last version seen; on 410 Gone (history compacted) list again and turn
the difference into add/update/delete events, so handlers never miss a delete.
Handlers run synchronously on the event loop, in event order, and must not block.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Generic, Iterable, TypeVar

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, str]  # (namespace or "", name)


class EventHandler:
    """Override what you need; each is called after the cache has changed."""

    def on_add(self, obj: Any) -> None: ...

    def on_update(self, old: Any, new: Any) -> None: ...

    def on_delete(self, obj: Any) -> None: ...


class _FuncHandler(EventHandler):
    def __init__(self, on_add=None, on_update=None, on_delete=None):
        self._add, self._update, self._delete = on_add, on_update, on_delete

    def on_add(self, obj):
        if self._add:
            self._add(obj)

    def on_update(self, old, new):
        if self._update:
            self._update(old, new)

    def on_delete(self, obj):
        if self._delete:
            self._delete(obj)


def key_of(obj: Any) -> Key:
    md = obj.metadata
    return (md.namespace or "", md.name)


class Informer(Generic[T]):
    """Cache of one lightkube resource type (all namespaces unless `namespace` is given)."""

    def __init__(self, client: AsyncClient, resource: type[T], *, namespace: str | None = None,
                 labels: dict | None = None, fields: dict | None = None,
                 retry_delay: float = 1.0, transform: Callable[[Any], Any] | None = None,
                 chunk_size: int | None = None):
        self.client = client
        # List in pages of this many objects (limit/continue), as client-go's reflector does:
        # a big cluster's first list then never has to sit in memory whole.
        self.chunk_size = chunk_size
        # Like client-go's SetTransform: applied to every object before it is cached or handed
        # to handlers, so a spoke can keep only what it needs (it must keep .metadata's
        # name, namespace and resourceVersion).
        self.transform = transform
        self.resource = resource
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.retry_delay = retry_delay
        self.cache: dict[Key, T] = {}
        self.resource_version: str | None = None
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- handlers and reads -------------------------------------------------
    def add_handler(self, handler: EventHandler | None = None, *, on_add: Callable | None = None,
                    on_update: Callable | None = None, on_delete: Callable | None = None) -> None:
        """Register a handler; objects already cached are replayed to it as adds."""
        h = handler or _FuncHandler(on_add, on_update, on_delete)
        self._handlers.append(h)
        for obj in list(self.cache.values()):
            h.on_add(obj)

    def get(self, name: str, namespace: str = "") -> T | None:
        return self.cache.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> list[T]:
        if namespace is None:
            return list(self.cache.values())
        return [o for (ns, _), o in self.cache.items() if ns == namespace]

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.__name__}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.status.code == 410:
                    log.info("%s: watch expired (%s); listing again", self.resource.__name__, err)
                    need_list = True
                    continue
                log.warning("%s: %s; retrying", self.resource.__name__, err)
                await asyncio.sleep(self.retry_delay)
            except Exception as err:  # connection refused, reset, server restart...
                log.warning("%s: %s: %s; retrying", self.resource.__name__, type(err).__name__, err)
                await asyncio.sleep(self.retry_delay)

    def _ns_arg(self) -> str:
        return self.namespace if self.namespace else "*"

    async def _relist(self) -> None:
        kwargs: dict[str, Any] = {}
        if _is_namespaced(self.resource):
            kwargs["namespace"] = self._ns_arg()
        if self.chunk_size:
            kwargs["chunk_size"] = self.chunk_size
        listing = self.client.list(self.resource, labels=self.labels, fields=self.fields, **kwargs)
        fresh: dict[Key, T] = {}
        async for obj in listing:
            if self.transform is not None:
                obj = self.transform(obj)
            fresh[key_of(obj)] = obj
        self.resource_version = listing.resourceVersion
        self._replace(fresh.values())
        self._synced.set()

    def _replace(self, objs: Iterable[T]) -> None:
        """Swap in a full listing, telling handlers only what changed."""
        old_cache = self.cache
        self.cache = {key_of(o): o for o in objs}
        for key, obj in self.cache.items():
            old = old_cache.get(key)
            if old is None:
                self._emit("add", None, obj)
            elif old.metadata.resourceVersion != obj.metadata.resourceVersion:
                self._emit("update", old, obj)
        for key, old in old_cache.items():
            if key not in self.cache:
                self._emit("delete", old, None)

    async def _watch(self) -> None:
        kwargs: dict[str, Any] = {}
        if _is_namespaced(self.resource):
            kwargs["namespace"] = self._ns_arg()
        # lightkube's default on_error raises: every error reaches _run, which decides.
        stream = self.client.watch(self.resource, labels=self.labels, fields=self.fields,
                                   resource_version=self.resource_version, **kwargs)
        async for event_type, obj in stream:
            if self.transform is not None and event_type != "BOOKMARK":
                obj = self.transform(obj)
            rv = obj.metadata.resourceVersion
            if event_type == "BOOKMARK":
                self.resource_version = rv
                continue
            key = key_of(obj)
            if event_type == "DELETED":
                old = self.cache.pop(key, None)
                self.resource_version = rv
                self._emit("delete", old, obj)
                continue
            old = self.cache.get(key)
            self.cache[key] = obj
            self.resource_version = rv
            if old is None:
                self._emit("add", None, obj)
            else:
                self._emit("update", old, obj)
        # lightkube re-opens a watch the server closed (timeout) from the last version seen.

    def _emit(self, kind: str, old: Any, new: Any) -> None:
        for h in self._handlers:
            try:
                if kind == "add":
                    h.on_add(new)
                elif kind == "update":
                    h.on_update(old, new)
                else:
                    h.on_delete(old if old is not None else new)
            except Exception:  # a handler bug must not kill the informer
                log.exception("%s handler failed on %s", self.resource.__name__, kind)


def _is_namespaced(resource: type) -> bool:
    from lightkube.core import resource as r
    return issubclass(resource, (r.NamespacedResource,))
