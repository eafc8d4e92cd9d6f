"""The watch cache: the API server's in-memory copy of the store, and watch fan-out.

One store watcher per server feeds it (as kube-apiserver's cacher does): every
object lives here decoded, lists are answered from memory at the cache's
revision, and each client watch is a filtered queue fed from the one stream,
not a database poll. A bounded window of recent events lets a watch start from
an older resourceVersion; older than the window is 410 Expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import orjson

from kubesvc.objects.registry import ResourceType, by_plural
from kubesvc.store.base import CompactedError, Event, Store

log = logging.getLogger(__name__)

REGISTRY = "/registry/"


def resource_prefix(rt: ResourceType) -> str:
    return f"{REGISTRY}{rt.group + '/' if rt.group else ''}{rt.plural}/"


def object_key(rt: ResourceType, namespace: str | None, name: str) -> str:
    if rt.namespaced:
        return f"{resource_prefix(rt)}{namespace}/{name}"
    return f"{resource_prefix(rt)}{name}"


def parse_key(key: str) -> tuple[ResourceType, str, str] | None:
    """(resource, namespace, name) for a store key."""
    parts = key[len(REGISTRY):].split("/")
    if len(parts) == 4:
        rt = by_plural(parts[0], parts[1])
        rest = parts[2:]
    else:
        rt = by_plural("", parts[0])
        if rt is not None:
            rest = parts[1:]
        else:
            rt = by_plural(parts[0], parts[1]) if len(parts) == 3 else None
            rest = parts[2:]
    if rt is None:
        return None
    if rt.namespaced:
        return (rt, rest[0], rest[1]) if len(rest) == 2 else None
    return (rt, "", rest[0]) if len(rest) == 1 else None


def decode(rt: ResourceType, value: bytes, mod_revision: int) -> dict:
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


class CacheEvent:
    """One change of one object, decoded (type is ADDED, MODIFIED or DELETED).

    The previous version is decoded only when someone asks (a watcher with a
    selector, the garbage collector): replaying history at start-up would
    otherwise decode every change twice.
    """

    __slots__ = ("rev", "type", "rt", "namespace", "obj", "_prev", "_prev_raw")

    def __init__(self, rev: int, type: str, rt: ResourceType, namespace: str, obj: dict,
                 prev: dict | None = None, prev_raw: tuple[bytes, int] | None = None):
        self.rev = rev
        self.type = type
        self.rt = rt
        self.namespace = namespace
        self.obj = obj
        self._prev = prev
        self._prev_raw = prev_raw

    @property
    def prev(self) -> dict | None:
        if self._prev is None and self._prev_raw is not None:
            self._prev = decode(self.rt, *self._prev_raw)
            self._prev_raw = None
        return self._prev


Filter = Callable[[dict], bool]


@dataclass(eq=False)
class Watcher:
    """One client watch: a queue of events for a resource (and namespace), with a filter."""

    rt: ResourceType
    namespace: str | None
    matches: Filter
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    closed: bool = False

    def offer(self, ev: CacheEvent) -> None:
        if self.closed or ev.rt is not self.rt:
            return
        if self.namespace and ev.namespace != self.namespace:
            return
        now = ev.type != "DELETED" and self.matches(ev.obj)
        before = ev.prev is not None and self.matches(ev.prev)
        # An object moving in or out of the selection is ADDED / DELETED for this watcher.
        if now and before:
            typ, obj = ev.type, ev.obj
        elif now:
            typ, obj = "ADDED", ev.obj
        elif before:
            typ, obj = "DELETED", ev.obj if ev.type == "DELETED" else ev.obj
        else:
            return
        if self.queue.qsize() > 100_000:
            # A client that does not read: end its watch; it relists and resumes.
            self.close()
            return
        self.queue.put_nowait((typ, obj, ev.rev))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class WatchCache:
    """Every stored object, decoded, kept current from one store watch."""

    def __init__(self, store: Store, window: int = 20000):
        self.store = store
        self.window = window
        self.rev = 0
        # (group, plural) -> namespace -> name -> object
        self._data: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
        # (rev, type, resource, namespace, value bytes, (prev bytes, prev rev) | None)
        self._events: deque[tuple] = deque(maxlen=window)
        self._oldest = 1  # a watch may start from any rev >= this - 1 (events after it)
        self._watchers: set[Watcher] = set()
        self._rev_waiters: list[tuple[int, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self._history_loaded = asyncio.Event()  # the window holds the history replayed at start
        self._listeners: list[Callable[[CacheEvent], None]] = []
        self.uids: dict[str, tuple[ResourceType, str, str]] = {}

    async def start(self) -> None:
        kvs, rev = await self.store.range(REGISTRY)
        for kv in kvs:
            k = parse_key(kv.key)
            if k is None:
                continue
            rt, ns, name = k
            obj = decode(rt, kv.value, kv.mod_revision)
            self._put(rt, ns, name, obj)
        self.rev = rev
        # Replay recent history into the window so that watches resumed after a
        # restart with a resourceVersion from before it still get their events.
        start = max(self.store.compact_revision + 1, rev - self.window + 1, 1)
        self._oldest = start
        stream = self.store.watch(REGISTRY, start)
        self._task = asyncio.create_task(self._run(stream, rev))
        if start > rev:
            self._history_loaded.set()
            return
        # The history arrives through the store watch, asynchronously: until it is in the
        # window a watch resumed from before the restart would find nothing to replay, so
        # the server is not ready before it (bounded: a revision written outside the
        # registry would never show up as an event).
        try:
            await asyncio.wait_for(asyncio.shield(self._history_loaded.wait()), 10)
        except asyncio.TimeoutError:
            log.warning("watch cache: history up to revision %d not replayed within 10 s; a watch resumed "
                        "from before it may miss events", rev)

    async def _run(self, stream, loaded_rev: int) -> None:
        try:
            while True:
                try:
                    async for events in stream:
                        for e in events:
                            self._apply(e, history=e.kv.mod_revision <= loaded_rev)
                        if events and events[-1].kv.mod_revision >= loaded_rev:
                            self._history_loaded.set()
                        self._wake()
                    return
                except CompactedError as err:
                    if self.rev > loaded_rev or err.compact_revision > loaded_rev:
                        raise
                    # Part of the history before the listed state is gone (etcd compacted
                    # it): the window starts where the store's history does.
                    start = err.compact_revision + 1
                    log.info("store history compacted at %d; watch window starts at %d",
                             err.compact_revision, start)
                    self._oldest = start
                    stream = self.store.watch(REGISTRY, start)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watch cache stopped")
            raise

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for w in list(self._watchers):
            w.close()

    def _put(self, rt: ResourceType, ns: str, name: str, obj: dict) -> dict | None:
        by_ns = self._data.setdefault((rt.group, rt.plural), {}).setdefault(ns, {})
        prev = by_ns.get(name)
        by_ns[name] = obj
        uid = obj["metadata"].get("uid")
        if uid:
            self.uids[uid] = (rt, ns, name)
        return prev

    def _drop(self, rt: ResourceType, ns: str, name: str) -> None:
        by_ns = self._data.get((rt.group, rt.plural), {}).get(ns)
        if by_ns is not None:
            old = by_ns.pop(name, None)
            if old is not None:
                self.uids.pop(old["metadata"].get("uid"), None)

    def _apply(self, e: Event, history: bool) -> None:
        k = parse_key(e.kv.key)
        if k is None:
            return
        rt, ns, name = k
        rev = e.kv.mod_revision
        if e.type == "DELETE":
            typ = "DELETED"
        else:
            typ = "MODIFIED" if e.prev is not None else "ADDED"
        prev_raw = (e.prev.value, e.prev.mod_revision) if e.prev is not None else None
        # The window keeps the undecoded change (bytes the store already holds): it is
        # decoded only if a watch resumes from before it.
        self._events.append((rev, typ, rt, ns, e.kv.value, prev_raw))
        if len(self._events) == self._events.maxlen:
            self._oldest = self._events[0][0]
        if history:
            return  # already in the listed state
        cur = self.get(rt, ns, name)
        if cur is not None and e.prev is not None and cur["metadata"].get("resourceVersion") == str(e.prev.mod_revision):
            # The previous version is the cached object: no need to decode it again.
            prev = cur
            if typ == "DELETED":
                obj = {**cur, "metadata": {**cur["metadata"], "resourceVersion": str(rev)}}
            else:
                obj = decode(rt, e.kv.value, rev)
            ev = CacheEvent(rev, typ, rt, ns, obj, prev)
        else:
            ev = CacheEvent(rev, typ, rt, ns, decode(rt, e.kv.value, rev), None, prev_raw)
        if typ == "DELETED":
            self._drop(rt, ns, name)
        else:
            self._put(rt, ns, name, ev.obj)
        self.rev = rev
        for w in list(self._watchers):
            w.offer(ev)
        for fn in self._listeners:
            try:
                fn(ev)
            except Exception:
                log.exception("cache listener failed")

    def _wake(self) -> None:
        if not self._rev_waiters:
            return
        keep = []
        for rev, fut in self._rev_waiters:
            if rev <= self.rev:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._rev_waiters = keep

    async def wait_for(self, rev: int, timeout: float = 10.0) -> bool:
        """Wait until the cache has applied rev (read-your-writes for the writer)."""
        if self.rev >= rev:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._rev_waiters.append((rev, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def add_listener(self, fn: Callable[[CacheEvent], None]) -> None:
        self._listeners.append(fn)

    # -- reads -----------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict | None:
        return self._data.get((rt.group, rt.plural), {}).get(namespace or "", {}).get(name)

    def list(self, rt: ResourceType, namespace: str | None = None) -> list[dict]:
        """Objects of a resource (in one namespace or all), ordered by namespace then name."""
        by_ns = self._data.get((rt.group, rt.plural), {})
        if namespace:
            objs = by_ns.get(namespace, {})
            return [objs[n] for n in sorted(objs)]
        out = []
        for ns in sorted(by_ns):
            objs = by_ns[ns]
            out.extend(objs[n] for n in sorted(objs))
        return out

    def list_at(self, rt: ResourceType, namespace: str | None, rev: int) -> list[dict] | None:
        """Objects as they were at revision rev (None when the window does not reach back that far).

        The current state with the window's later changes undone, newest first: what
        a list with resourceVersionMatch=Exact, or a continue token, reads from etcd
        in kube-apiserver.
        """
        if rev >= self.rev:
            return self.list(rt, namespace)
        if rev < self.oldest:
            return None
        state = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in self.list(rt, namespace)}
        for erev, typ, ert, ns, value, prev_raw in reversed(self._events):
            if erev <= rev:
                break
            if ert is not rt or (namespace and ns != namespace):
                continue
            name = orjson.loads(value)["metadata"]["name"] if prev_raw is None else None
            if prev_raw is None:  # created after rev
                state.pop((ns, name), None)
            else:  # modified or deleted after rev: it was the previous version
                prev = decode(rt, *prev_raw)
                state[(ns, prev["metadata"]["name"])] = prev
        return [state[k] for k in sorted(state)]

    def count(self, rt: ResourceType, namespace: str | None = None) -> int:
        by_ns = self._data.get((rt.group, rt.plural), {})
        if namespace:
            return len(by_ns.get(namespace, {}))
        return sum(len(v) for v in by_ns.values())

    def namespaces_in_use(self, namespace: str) -> list[tuple[ResourceType, dict]]:
        """Every namespaced object in a namespace (namespace deletion uses it)."""
        out = []
        from kubesvc.objects.registry import RESOURCES
        for rt in RESOURCES:
            if rt.namespaced:
                out.extend((rt, o) for o in self.list(rt, namespace))
        return out

    # -- watches ---------------------------------------------------------------------------

    @property
    def oldest(self) -> int:
        """The oldest resourceVersion a watch may start from."""
        return self._oldest - 1

    def watch(self, rt: ResourceType, namespace: str | None, matches: Filter, since: int | None) -> tuple[Watcher, list]:
        """A new watcher and the events it missed after revision `since` (None: none).

        The caller checked `since >= self.oldest`; the replay comes from the window.
        """
        w = Watcher(rt, namespace, matches)
        replay: list = []
        if since is not None and since < self.rev:
            tmp = Watcher(rt, namespace, matches)
            for rev, typ, ert, ns, value, prev_raw in self._events:
                if rev > since and ert is rt and (not namespace or ns == namespace):
                    tmp.offer(CacheEvent(rev, typ, ert, ns, decode(ert, value, rev), None, prev_raw))
            while not tmp.queue.empty():
                replay.append(tmp.queue.get_nowait())
        self._watchers.add(w)
        return w, replay

    def unwatch(self, w: Watcher) -> None:
        self._watchers.discard(w)
        w.closed = True

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
