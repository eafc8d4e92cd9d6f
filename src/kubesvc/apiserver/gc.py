"""What kube-controller-manager does inside kube-apiserver's process here: the
garbage collector (ownerReferences, Background/Foreground/Orphan propagation),
the namespace controller (a Terminating namespace loses its content, then goes),
and the pod GC controller's part of graceful deletion (a bound pod past its
deletionTimestamp goes only when its node is missing or not Ready; on a Ready
node the agent removes it once stopped, as the kubelet does).

A single loop over the watch cache, woken by changes and by a 1 s tick; each
pass works from a snapshot and writes through the registry with preconditions,
so a pass that races a client simply retries on the next one.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time

from kubesvc.apiserver.rest import Registry
from kubesvc.apiserver.watchcache import WatchCache
from kubesvc.objects.errors import StatusError
from kubesvc.objects.registry import RESOURCES, ResourceType, by_kind

log = logging.getLogger(__name__)

_NS = by_kind("", "Namespace")
_EVENT = by_kind("", "Event")
_NODE = by_kind("", "Node")


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc).timestamp()
    except ValueError:
        return None


Key = tuple  # (ResourceType, namespace, name)


def _refs(obj: dict | None) -> list[dict]:
    return ((obj or {}).get("metadata") or {}).get("ownerReferences") or []


class GarbageCollector:
    """The in-process controllers that finish deletions.

    Event-driven so that a pass costs what changed, not what is stored: the
    watch cache's listener keeps an owner-uid → dependents index and marks
    objects to look at (a deleted owner's dependents, objects being deleted,
    objects whose owner is not there); a 1 s tick re-checks what is waiting
    (grace periods, terminating namespaces, finalizers).
    """

    def __init__(self, registry: Registry, cache: WatchCache, interval: float = 1.0, event_ttl: float = 3600):
        self.registry = registry
        self.cache = cache
        self.interval = interval
        # Events go after an hour without change, as kube-apiserver's --event-ttl does
        # it (an etcd lease on each event).
        self.event_ttl = event_ttl
        self._next_event_sweep = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._dirty: set[Key] = set()
        self._deleting: set[Key] = set()
        self._deps: dict[str, set[Key]] = {}
        self._orphaned_since: dict[Key, float] = {}
        # uids of objects seen deleted recently: their dependents go at once (an
        # owner never seen may just not be created yet; those wait a moment).
        self._gone: dict[str, float] = {}
        cache.add_listener(self._on_event)

    def start(self) -> None:
        for rt in RESOURCES:
            for o in self.cache.list(rt):
                md = o["metadata"]
                key = (rt, md.get("namespace") or "", md["name"])
                for ref in _refs(o):
                    self._deps.setdefault(ref.get("uid"), set()).add(key)
                if _refs(o):
                    self._dirty.add(key)
                if md.get("deletionTimestamp"):
                    self._deleting.add(key)
        self._task = asyncio.create_task(self._run())

    def _on_event(self, ev) -> None:
        md = ev.obj["metadata"]
        key = (ev.rt, ev.namespace, md["name"])
        for ref in _refs(ev.prev):
            deps = self._deps.get(ref.get("uid"))
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._deps[ref.get("uid")]
        if ev.type == "DELETED":
            self._deleting.discard(key)
            self._orphaned_since.pop(key, None)
            self._dirty.discard(key)
            if md.get("uid") in self._deps:
                self._gone[md["uid"]] = time.monotonic()
            # Its dependents may now be orphans; a namespace being emptied may now go.
            self._dirty.update(self._deps.get(md.get("uid"), ()))
            for ref in _refs(ev.obj):
                owner = self.cache.uids.get(ref.get("uid"))
                if owner is not None:
                    self._dirty.add(owner)
        else:
            for ref in _refs(ev.obj):
                self._deps.setdefault(ref.get("uid"), set()).add(key)
            if md.get("deletionTimestamp"):
                self._deleting.add(key)
            if _refs(ev.obj) and any(r.get("uid") not in self.cache.uids for r in _refs(ev.obj)):
                self._dirty.add(key)
        if self._dirty or ev.type == "DELETED" or md.get("deletionTimestamp"):
            self._wake.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await asyncio.sleep(0.05)  # let a burst of changes land before a pass
            try:
                await self.run_once()
                if time.monotonic() >= self._next_event_sweep:
                    self._next_event_sweep = time.monotonic() + min(60.0, self.event_ttl / 4)
                    await self.expire_events()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("garbage collector pass failed")

    def _dependents(self, uid: str) -> list[tuple[ResourceType, dict]]:
        out = []
        for rt, ns, name in list(self._deps.get(uid, ())):
            o = self.cache.get(rt, ns or None, name)
            if o is not None:
                out.append((rt, o))
        return out

    async def run_once(self) -> None:
        now = _dt.datetime.now(_dt.timezone.utc).timestamp()
        keys = self._dirty | self._deleting
        self._dirty = set()
        if self._gone:
            horizon = time.monotonic() - 300
            self._gone = {u: t for u, t in self._gone.items() if t > horizon}
        for key in keys:
            rt, ns, name = key
            o = self.cache.get(rt, ns or None, name)
            if o is None:
                continue
            md = o["metadata"]
            try:
                if md.get("deletionTimestamp"):
                    await self._finish_deletion(rt, o, self._dependents(md.get("uid")), now)
                    continue
                refs = _refs(o)
                if not refs:
                    continue
                live = [r for r in refs if r.get("uid") in self.cache.uids]
                if live:
                    self._orphaned_since.pop(key, None)
                    if len(live) != len(refs):
                        await self._set_owner_refs(rt, o, live)
                    continue
                # All owners gone; act only a moment later (an owner may be created
                # just after its dependent).
                first = self._orphaned_since.setdefault(key, now)
                if now - first >= 1.0 or all(r.get("uid") in self._gone for r in refs):
                    self._orphaned_since.pop(key, None)
                    await self._delete(rt, o, {"propagationPolicy": "Background"})
                else:
                    self._dirty.add(key)
            except StatusError as err:
                if err.code not in (404, 409):
                    log.warning("gc: %s %s/%s: %s", rt.kind, md.get("namespace"), md.get("name"), err.message)

    async def expire_events(self) -> None:
        now = _dt.datetime.now(_dt.timezone.utc).timestamp()
        for ev in self.cache.list(_EVENT):
            md = ev["metadata"]
            stamps = [_ts(md.get("creationTimestamp")), _ts(ev.get("lastTimestamp")),
                      _ts((ev.get("eventTime") or "")[:19] + "Z" if ev.get("eventTime") else None)]
            last = max((t for t in stamps if t is not None), default=None)
            if last is not None and now - last > self.event_ttl:
                await self.registry.force_delete(_EVENT, md.get("namespace"), md["name"],
                                                 int(md["resourceVersion"]))

    async def _finish_deletion(self, rt: ResourceType, o: dict, deps: list, now: float) -> None:
        md = o["metadata"]
        fins = md.get("finalizers") or []
        uid = md.get("uid")
        if rt.kind == "Namespace":
            await self._namespace(o)
            return
        if "foregroundDeletion" in fins:
            live = [(drt, d) for drt, d in deps if not d["metadata"].get("deletionTimestamp")]
            for drt, d in live:
                await self._delete(drt, d, {"propagationPolicy": "Foreground"})
            if not deps:
                await self._remove_finalizer(rt, o, "foregroundDeletion")
            return
        if "orphan" in fins:
            for drt, d in deps:
                refs = [r for r in d["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                await self._set_owner_refs(drt, d, refs)
            await self._remove_finalizer(rt, o, "orphan")
            return
        if rt.kind == "Pod" and not fins:
            deadline = _ts(md.get("deletionTimestamp"))
            if deadline is not None and deadline <= now and not self._node_can_confirm(o):
                # Past its grace period on a node that is gone or not Ready: the pod
                # GC controller's job. A Ready node's agent removes the pod itself once
                # its containers have stopped (DELETE with gracePeriodSeconds=0).
                await self.registry.force_delete(rt, md.get("namespace"), md["name"],
                                                 int(md["resourceVersion"]))

    def _node_can_confirm(self, pod: dict) -> bool:
        """Whether the pod's node is there and Ready, so its agent will confirm the deletion."""
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.cache.get(_NODE, None, node_name) if node_name else None
        if node is None:
            return False
        conds = (node.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    async def _namespace(self, ns: dict) -> None:
        name = ns["metadata"]["name"]
        content = self.cache.namespaces_in_use(name)
        for rt, o in content:
            if not o["metadata"].get("deletionTimestamp"):
                await self._delete(rt, o, {"propagationPolicy": "Background"})
            elif rt.kind == "Pod" and not o["metadata"].get("finalizers") and not (o.get("spec") or {}).get("nodeName"):
                await self.registry.force_delete(rt, name, o["metadata"]["name"], None)
        if content or ns["metadata"].get("finalizers"):
            return  # content still going, or someone else's finalizer still on it
        await self.registry.force_delete(_NS, None, name, int(ns["metadata"]["resourceVersion"]))

    async def _delete(self, rt: ResourceType, o: dict, opts: dict) -> None:
        md = o["metadata"]
        try:
            await self.registry.delete(rt, md.get("namespace"), md["name"],
                                       {**opts, "preconditions": {"uid": md.get("uid")}})
        except StatusError as err:
            if err.code not in (404, 409):
                raise

    async def _remove_finalizer(self, rt: ResourceType, o: dict, fin: str) -> None:
        md = o["metadata"]

        def fn(cur: dict) -> dict:
            cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers") or [] if f != fin]
            if not cur["metadata"]["finalizers"]:
                del cur["metadata"]["finalizers"]
            return cur
        await self.registry.guaranteed_update(rt, md.get("namespace"), md["name"], fn,
                                              manager="kube-controller-manager")

    async def _set_owner_refs(self, rt: ResourceType, o: dict, refs: list) -> None:
        md = o["metadata"]

        def fn(cur: dict) -> dict:
            if refs:
                cur["metadata"]["ownerReferences"] = refs
            else:
                cur["metadata"].pop("ownerReferences", None)
            return cur
        await self.registry.guaranteed_update(rt, md.get("namespace"), md["name"], fn,
                                              manager="kube-controller-manager")
