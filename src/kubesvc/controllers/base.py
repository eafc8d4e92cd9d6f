"""What every controller is made of: shared informers, a fresh view of the cache, a
work queue with workers, and the context (client, recorder, options) they run in.

As in kube-controller-manager, all controllers share one informer per resource type
(one list+watch each, however many controllers read it), and each controller owns a
work queue of keys that its handlers fill and its workers drain.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from kubesvc.client import Informer
from kubesvc.controllers.util import ns_name, rv_newer
from kubesvc.controllers.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str]


class FreshView:
    """An informer's cache overlaid with the controllers' own writes not yet seen back.

    A controller that creates five pods and syncs again before the watch delivers
    them would create five more; client-go guards with "expectations". Here every
    write's result is recorded and read through until the informer catches up
    (a resourceVersion at least as new), and deletes leave a tombstone until the
    watch reports them. Also keeps a per-namespace index, so a sync reads the
    objects of one namespace without walking the whole cache.
    """

    def __init__(self, informer: Informer):
        self.informer = informer
        self._written: dict[Key, Any] = {}
        self._deleted: dict[Key, str | None] = {}  # key -> uid deleted
        self._by_ns: dict[str, dict[str, Any]] = {}
        informer.add_handler(on_add=self._seen, on_update=lambda _o, n: self._seen(n),
                             on_delete=self._gone)

    def _seen(self, obj: Any) -> None:
        key = ns_name(obj)
        self._by_ns.setdefault(key[0], {})[key[1]] = obj
        w = self._written.get(key)
        if w is not None and (w.metadata.uid != obj.metadata.uid
                              or rv_newer(obj.metadata.resourceVersion, w.metadata.resourceVersion)):
            del self._written[key]
        d = self._deleted.get(key, False)
        if d is not False and d != obj.metadata.uid:
            del self._deleted[key]  # a new object under the same name

    def _gone(self, obj: Any) -> None:
        key = ns_name(obj)
        names = self._by_ns.get(key[0])
        if names is not None:
            names.pop(key[1], None)
            if not names:
                del self._by_ns[key[0]]
        w = self._written.get(key)
        if w is not None and w.metadata.uid == obj.metadata.uid:
            del self._written[key]
        self._deleted.pop(key, None)

    def record(self, obj: Any) -> None:
        """Remember the result of a create/update/patch until the watch shows it."""
        key = ns_name(obj)
        self._deleted.pop(key, None)
        cur = self.informer.get(key[1], key[0])
        if cur is not None and cur.metadata.uid == obj.metadata.uid and \
                rv_newer(cur.metadata.resourceVersion, obj.metadata.resourceVersion):
            return
        self._written[key] = obj

    def record_delete(self, obj: Any) -> None:
        key = ns_name(obj)
        self._written.pop(key, None)
        self._deleted[key] = obj.metadata.uid

    def get(self, name: str, namespace: str = "") -> Any | None:
        key = (namespace or "", name)
        if key in self._deleted:
            cur = self._written.get(key) or self.informer.get(name, namespace)
            if cur is None or cur.metadata.uid == self._deleted[key]:
                return None
        w = self._written.get(key)
        return w if w is not None else self.informer.get(name, namespace)

    def list(self, namespace: str | None = None) -> list[Any]:
        if namespace is None:
            names = {k for k in self.informer.cache}
        else:
            names = {(namespace, n) for n in self._by_ns.get(namespace, ())}
        names.update(k for k in self._written if namespace is None or k[0] == namespace)
        out = []
        for ns, n in names:
            obj = self.get(n, ns)
            if obj is not None:
                out.append(obj)
        return out

    def namespaces(self) -> list[str]:
        return list(self._by_ns)


def _trim(obj: Any) -> None:
    md = obj.metadata
    if md is not None and md.managedFields is not None:
        md.managedFields = None


class SharedInformers:
    """One informer (and one FreshView) per resource type, shared by all controllers."""

    def __init__(self, client: AsyncClient):
        self.client = client
        self._informers: dict[type, Informer] = {}
        self._views: dict[type, FreshView] = {}
        self._indexes: dict[tuple, Any] = {}

    def informer(self, resource: type) -> Informer:
        inf = self._informers.get(resource)
        if inf is None:
            inf = self._informers[resource] = Informer(self.client, resource)
            # First handler of every informer: drop managedFields from cached objects, as
            # kube-controller-manager's informers do (no controller reads them; at
            # 10,000 pods they are a good part of the memory).
            inf.add_handler(on_add=_trim, on_update=lambda _o, n: _trim(n))
        return inf

    def view(self, resource: type) -> FreshView:
        v = self._views.get(resource)
        if v is None:
            v = self._views[resource] = FreshView(self.informer(resource))
        return v

    def label_index(self, resource: type) -> "LabelIndex":
        idx = self._indexes.get(("labels", resource))
        if idx is None:
            idx = self._indexes[("labels", resource)] = LabelIndex(self.informer(resource))
        return idx

    def selector_index(self, resource: type, selector_of: Callable[[Any], dict | None]) -> "SelectorIndex":
        idx = self._indexes.get(("selector", resource))
        if idx is None:
            idx = self._indexes[("selector", resource)] = SelectorIndex(self.informer(resource), selector_of)
        return idx

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(inf.wait_synced(timeout) for inf in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))


@dataclass
class ControllerContext:
    """What a controller gets from the manager."""

    client: AsyncClient
    informers: SharedInformers
    recorder: Any  # events.EventRecorder
    options: dict = field(default_factory=dict)


class Controller:
    """A work queue of keys plus workers calling ``sync(key)``; subclasses fill the queue
    from informer handlers in ``setup`` and make the world match in ``sync``."""

    name = "controller"
    workers = 1
    max_retries = 15

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx
        self.client = ctx.client
        self.informers = ctx.informers
        self.queue: WorkQueue = WorkQueue(self.name)
        self._tasks: list[asyncio.Task] = []
        self.syncs = 0

    def setup(self) -> None:
        """Register informer handlers (before the informers start)."""

    async def sync(self, key: Any) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Called once caches are synced, before workers run."""

    def run(self) -> list[asyncio.Task]:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}")
                       for i in range(self.workers)]
        return self._tasks

    async def stop(self) -> None:
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                self.syncs += 1
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure is retried with back-off
                if self.queue.num_requeues(key) < self.max_retries:
                    if isinstance(err, ApiError) and err.status.code == 409:
                        log.debug("%s %s: conflict, retrying: %s", self.name, key, err)
                    else:
                        log.warning("%s: syncing %s failed: %s: %s", self.name, key,
                                    type(err).__name__, err)
                    self.queue.add_rate_limited(key)
                else:
                    log.error("%s: dropping %s after %d retries: %s", self.name, key,
                              self.max_retries, err)
                    self.queue.forget(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)


def enqueue_obj(queue: WorkQueue) -> Callable[[Any], None]:
    return lambda obj: queue.add(ns_name(obj))


def is_not_found(err: Exception) -> bool:
    return isinstance(err, ApiError) and err.status.code == 404


def is_conflict(err: Exception) -> bool:
    return isinstance(err, ApiError) and err.status.code in (409,)


class _PairIndex:
    """Object names by (namespace, key, value) pair: what LabelIndex (pairs = labels)
    and SelectorIndex (pairs = selector) both keep."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str, str], set[str]] = {}

    def _index(self, key: Key, pairs: dict) -> None:
        for k, v in pairs.items():
            self._pairs.setdefault((key[0], k, v), set()).add(key[1])

    def _unindex(self, key: Key, pairs: dict) -> None:
        for k, v in pairs.items():
            names = self._pairs.get((key[0], k, v))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self._pairs[(key[0], k, v)]


class LabelIndex(_PairIndex):
    """Objects of an informer indexed by (namespace, label key, value): a selector's
    matches are found from its rarest pair instead of by walking the namespace
    (10,000 pods: a service sync reads its 10 pods, not 10,000)."""

    def __init__(self, informer: Informer):
        super().__init__()
        self._labels: dict[Key, dict] = {}
        informer.add_handler(on_add=self._set, on_update=lambda _o, n: self._set(n), on_delete=self._del)

    def _set(self, obj: Any) -> None:
        key = ns_name(obj)
        new = dict(obj.metadata.labels or {})
        old = self._labels.get(key)
        if old == new:
            return
        if old is not None:
            self._unindex(key, old)
        self._labels[key] = new
        self._index(key, new)

    def _del(self, obj: Any) -> None:
        key = ns_name(obj)
        old = self._labels.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def select(self, namespace: str, selector: dict[str, str]) -> list[str]:
        """Names in namespace whose labels contain every pair of a (map) selector."""
        if not selector:
            return []
        sets = []
        for k, v in selector.items():
            s = self._pairs.get((namespace, k, v))
            if not s:
                return []
            sets.append(s)
        sets.sort(key=len)
        return [n for n in sets[0] if all(n in s for s in sets[1:])]


class SelectorIndex(_PairIndex):
    """Objects with a map selector (Services) indexed by the pairs of their selector, to
    find the ones selecting a given label set without testing every one."""

    def __init__(self, informer: Informer, selector_of: Callable[[Any], dict | None]):
        super().__init__()
        self.selector_of = selector_of
        self._selectors: dict[Key, dict] = {}
        informer.add_handler(on_add=self._set, on_update=lambda _o, n: self._set(n), on_delete=self._del)

    def _set(self, obj: Any) -> None:
        key = ns_name(obj)
        new = dict(self.selector_of(obj) or {})
        old = self._selectors.get(key)
        if old == new:
            return
        if old:
            self._unindex(key, old)
        if new:
            self._selectors[key] = new
            self._index(key, new)
        else:
            self._selectors.pop(key, None)

    def _del(self, obj: Any) -> None:
        key = ns_name(obj)
        old = self._selectors.pop(key, None)
        if old:
            self._unindex(key, old)

    def selecting(self, namespace: str, labels: dict[str, str] | None) -> list[str]:
        """Names in namespace whose selector every pair of is in labels."""
        labels = labels or {}
        cands: set[str] = set()
        for k, v in labels.items():
            cands.update(self._pairs.get((namespace, k, v), ()))
        out = []
        for name in cands:
            sel = self._selectors.get((namespace, name))
            if sel and all(labels.get(k) == v for k, v in sel.items()):
                out.append(name)
        return out
