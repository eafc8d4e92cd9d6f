"""Generic REST storage: create, update, delete for every kind, the way
kube-apiserver's generic registry (``registry/generic/registry.Store``) does it.

Owns: the write path (prepare → default → validate → admit → store write with
optimistic concurrency → wait for the watch cache), server-owned metadata
(uid, creationTimestamp, generation, managedFields), finalizers and
deletionTimestamp, pod graceful deletion, and namespace lifecycle checks.
Per-kind behaviour comes from objects.strategy; reads come from the watch cache.
"""

from __future__ import annotations

import copy
import datetime as _dt
import inspect
import logging
from typing import Any, Callable

import orjson

from kubesvc.apiserver.patching import update_managed_fields
from kubesvc.apiserver.watchcache import WatchCache, object_key
from kubesvc.objects import meta as m
from kubesvc.objects.errors import (
    FieldError, StatusError, already_exists, bad_request, conflict, forbidden, forbidden_error, not_found,
    not_supported, required,
)
from kubesvc.objects.registry import ResourceType, by_kind
from kubesvc.objects.strategy import Admission, strategy_for
from kubesvc.store.base import KeyExistsError, KeyNotFoundError, RevisionMismatchError, Store

log = logging.getLogger(__name__)

NAMESPACE_RT = by_kind("", "Namespace")

# Kinds whose metadata.generation counts spec changes (their strategies set it in kube-apiserver).
GENERATION_KINDS = {"Deployment", "ReplicaSet"}
# Kinds whose PUT creates when absent (rest.Updater AllowCreateOnUpdate).
CREATE_ON_UPDATE = {"Service", "Endpoints", "EndpointSlice", "Event", "Lease"}
# Kinds whose main-resource update keeps the stored status (they have a status subresource).
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")

_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def qualified_kind(rt: ResourceType) -> str:
    return f"{rt.kind}.{rt.group}" if rt.group else rt.kind


def invalid(rt: ResourceType, name: str, errs: list[FieldError]) -> StatusError:
    text = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"
    details: dict[str, Any] = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    details["causes"] = [e.cause() for e in errs]
    return StatusError(422, "Invalid", f'{qualified_kind(rt)} "{name}" is invalid: {text}', details)


def _encode(obj: dict) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        meta = {k: v for k, v in meta.items() if k != "resourceVersion"}
        obj = {**obj, "metadata": meta}
    return orjson.dumps(obj)


def _with_rv(obj: dict, rev: int) -> dict:
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return obj


def _parse_rv(rv: Any, what: str = "resourceVersion") -> int:
    try:
        v = int(rv)
        if v < 0:
            raise ValueError
        return v
    except (TypeError, ValueError):
        raise bad_request(f'invalid resource version "{rv}"' if what == "resourceVersion"
                          else f"invalid {what}: {rv}")


def _content(obj: dict) -> dict:
    """Everything but metadata and status: what a generation counts."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: dict) -> dict:
    """What decides whether an update is a no-op. managedFields count (a write that
    only changes ownership, e.g. a server-side apply of the live values or kubectl's
    client-side to server-side apply upgrade, is written as kube-apiserver writes it);
    their timestamps do not (kube-apiserver keeps a manager's old time when its
    fields did not change, so a repeated identical write stays a no-op)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    mf = meta.get("managedFields")
    if mf:
        meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e
                                 for e in mf]
    return {**obj, "metadata": meta}


def _time_after(seconds: int) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _finish(finish, ok: bool) -> None:
    if finish is None:
        return
    r = finish(ok)
    if inspect.isawaitable(r):
        await r


class Registry:
    """The generic write path over a store and its watch cache."""

    def __init__(self, store: Store, cache: WatchCache):
        self.store = store
        self.cache = cache
        self.admission: dict[tuple[str, str], Admission] = {}

    # -- helpers ---------------------------------------------------------------------------

    def check_body_kind(self, rt: ResourceType, obj: dict) -> None:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if kind and kind != rt.kind:
            version = (api_version or rt.api_version).rpartition("/")[2]
            raise bad_request(f'{kind} in version "{version}" cannot be handled as a {rt.kind}: '
                              f"converting (v1.{kind}) to ({'core' if not rt.group else rt.group.split('.')[0]}"
                              f".{rt.kind}): unknown conversion")
        if api_version and api_version != rt.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({rt.api_version})")
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version

    def check_namespace(self, rt: ResourceType, namespace: str, creating: bool = True) -> None:
        """NamespaceLifecycle admission: the namespace must exist and, for creates, not be terminating."""
        if not rt.namespaced:
            return
        ns = self.cache.get(NAMESPACE_RT, None, namespace)
        if ns is None:
            raise not_found("namespaces", namespace)
        if creating and (ns.get("metadata", {}).get("deletionTimestamp")
                         or (ns.get("status") or {}).get("phase") == "Terminating"):
            raise StatusError(403, "Forbidden",
                              f"unable to create new content in namespace {namespace} because it is being "
                              "terminated", {"name": namespace, "kind": "namespaces"} |
                              {"causes": [{"reason": "NamespaceTerminating",
                                           "message": f"namespace {namespace} is being terminated",
                                           "field": "metadata.namespace"}]})

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self.cache.get(rt, namespace, name)
        if obj is None:
            raise not_found(rt.plural, name, rt.group)
        return obj

    async def _admit(self, rt: ResourceType, op: str, obj: dict | None, old: dict | None):
        adm = self.admission.get((rt.group, rt.kind))
        if adm is None:
            return None
        return await adm.admit(op, obj, old)

    async def _synced(self, rev: int) -> None:
        await self.cache.wait_for(rev)

    # -- create ----------------------------------------------------------------------------

    async def create(self, rt: ResourceType, namespace: str | None, obj: dict, *, manager: str = "",
                     dry_run: bool = False, operation: str = "Update") -> dict:
        meta = obj.get("metadata")
        if isinstance(meta, dict) and not meta.get("name") and meta.get("generateName"):
            # A generated name that collides is generated again, as kube-apiserver retries it.
            for _ in range(7):
                try:
                    return await self._create(rt, namespace, copy.deepcopy(obj), manager=manager,
                                              dry_run=dry_run, operation=operation)
                except StatusError as err:
                    if err.reason != "AlreadyExists":
                        raise
        return await self._create(rt, namespace, obj, manager=manager, dry_run=dry_run, operation=operation)

    async def _create(self, rt: ResourceType, namespace: str | None, obj: dict, *, manager: str,
                      dry_run: bool, operation: str) -> dict:
        self.check_body_kind(rt, obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent "
                                  "on the request")
            meta["namespace"] = namespace or body_ns or "default"
            namespace = meta["namespace"]
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = m.generate_name(meta["generateName"])
        name = meta.get("name") or ""
        if not name:
            raise invalid(rt, "", [required("metadata.name", "name or generateName is required")])
        self.check_namespace(rt, namespace or "")
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(f, None)
        meta["uid"] = m.new_uid()
        meta["creationTimestamp"] = m.now()
        if rt.kind in GENERATION_KINDS:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        strategy = strategy_for(rt.group, rt.kind)
        strategy.prepare_for_create(obj)
        strategy.default(obj)
        # The field manager sees the object after the decoder's defaults and before the
        # storage's (kube-apiserver: the create handler, then Store.Create's BeginCreate).
        if manager and operation == "Update":
            update_managed_fields(None, obj, manager, "Update", "")
        strategy.default_for_storage(obj)
        errs = m.validate_object_meta(obj, rt.kind, rt.namespaced) + strategy.validate(obj)
        if errs:
            raise invalid(rt, name, errs)
        finish = await self._admit(rt, "CREATE", obj, None)
        ok = False
        try:
            if dry_run:
                return obj
            try:
                kv = await self.store.create(object_key(rt, namespace, name), _encode(obj))
            except KeyExistsError:
                err = already_exists(rt.plural, name, rt.group)
                cur = self.cache.get(rt, namespace, name)
                if cur is not None and cur["metadata"].get("deletionTimestamp"):
                    err.message = "object is being deleted: " + err.message
                raise err
            ok = True
        finally:
            await _finish(finish, ok and not dry_run)
        await self._synced(kv.mod_revision)
        return _with_rv(obj, kv.mod_revision)

    # -- update ----------------------------------------------------------------------------

    async def update(self, rt: ResourceType, namespace: str | None, name: str, obj: dict, *,
                     subresource: str = "", manager: str = "", dry_run: bool = False,
                     operation: str = "Update") -> tuple[dict, bool]:
        """PUT semantics; returns (object, created)."""
        self.check_body_kind(rt, obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = namespace
        old = self.cache.get(rt, namespace, name)
        if old is None:
            if rt.kind in CREATE_ON_UPDATE and not subresource:
                return await self.create(rt, namespace, obj, manager=manager, dry_run=dry_run,
                                         operation=operation), True
            raise not_found(rt.plural, name, rt.group)
        want_rv = meta.get("resourceVersion")
        if want_rv:
            want = _parse_rv(want_rv)
            return await self._update(rt, old, lambda cur: obj, want_rv=want, subresource=subresource,
                                      manager=manager, dry_run=dry_run, operation=operation), False
        return await self._update(rt, old, lambda cur: copy.deepcopy(obj), want_rv=None,
                                  subresource=subresource, manager=manager, dry_run=dry_run,
                                  operation=operation), False

    async def guaranteed_update(self, rt: ResourceType, namespace: str | None, name: str,
                                fn: Callable[[dict], dict], *, subresource: str = "", manager: str = "",
                                dry_run: bool = False, operation: str = "Update") -> dict:
        """Read-modify-write with retries on conflict (PATCH and the server's own updates).

        fn gets a deep copy of the current object and returns the new one; a
        resourceVersion in what fn returns that differs from the current one is
        the caller's precondition (409 when stale).
        """
        old = self.cache.get(rt, namespace, name)
        if old is None:
            raise not_found(rt.plural, name, rt.group)
        return await self._update(rt, old, fn, want_rv=None, subresource=subresource, manager=manager,
                                  dry_run=dry_run, operation=operation, precondition_from_fn=True)

    async def _update(self, rt: ResourceType, old: dict, fn: Callable[[dict], dict], *, want_rv: int | None,
                      subresource: str, manager: str, dry_run: bool, operation: str,
                      precondition_from_fn: bool = False) -> dict:
        strategy = strategy_for(rt.group, rt.kind)
        name = old["metadata"]["name"]
        namespace = old["metadata"].get("namespace")
        for attempt in range(64):
            old_rv = int(old["metadata"]["resourceVersion"])
            if want_rv is not None and want_rv != old_rv:
                if want_rv > old_rv and await self.cache.wait_for(want_rv, 2.0):
                    old = self.cache.get(rt, namespace, name)
                    if old is None:
                        raise not_found(rt.plural, name, rt.group)
                    continue
                raise conflict(rt.plural, name, rt.group)
            new = fn(copy.deepcopy(old))
            new_meta = new.setdefault("metadata", {})
            if precondition_from_fn:
                rv = new_meta.get("resourceVersion")
                if rv and str(rv) != str(old_rv):
                    want_rv = _parse_rv(rv)
                    if want_rv != old_rv:
                        raise conflict(rt.plural, name, rt.group)
            new["kind"], new["apiVersion"] = rt.kind, rt.api_version
            new_meta["name"] = name
            if rt.namespaced:
                new_meta["namespace"] = namespace
            new = self._prepare_update(rt, strategy, new, old, subresource)
            errs = m.validate_object_meta_update(new, old)
            if not errs:
                errs = m.validate_object_meta(new, rt.kind, rt.namespaced) + (
                    strategy.validate(new) if subresource == "binding" else strategy.validate_update(new, old))
            if errs:
                raise invalid(rt, name, errs)
            if manager and operation == "Update":
                update_managed_fields(old, new, manager, "Update", subresource)
            if _comparable(new) == _comparable(old):
                return old  # no-op: nothing written, resourceVersion unchanged
            delete_now = self._should_delete_during_update(rt, new)
            finish = await self._admit(rt, "DELETE" if delete_now else "UPDATE",
                                       None if delete_now else new, old)
            ok = False
            try:
                if dry_run:
                    return new
                key = object_key(rt, namespace, name)
                try:
                    if delete_now:
                        kv = await self.store.delete(key, old_rv)
                    else:
                        kv = await self.store.update(key, _encode(new), old_rv)
                    ok = True
                except RevisionMismatchError as err:
                    if want_rv is not None:
                        raise conflict(rt.plural, name, rt.group)
                    await self.cache.wait_for(err.current.mod_revision, 2.0)
                    cur = self.cache.get(rt, namespace, name)
                    if cur is None:
                        raise not_found(rt.plural, name, rt.group)
                    old = cur
                    continue
                except KeyNotFoundError:
                    raise not_found(rt.plural, name, rt.group)
            finally:
                await _finish(finish, ok)
            await self._synced(kv.mod_revision)
            return _with_rv(new, kv.mod_revision)
        raise conflict(rt.plural, name, rt.group)

    def _prepare_update(self, rt: ResourceType, strategy, new: dict, old: dict, subresource: str) -> dict:
        if subresource == "status":
            obj = copy.deepcopy(old)
            if "status" in new:
                obj["status"] = new["status"]
            else:
                obj.pop("status", None)
            obj["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion",
                                                                     old["metadata"]["resourceVersion"])
            if new["metadata"].get("managedFields") is not None:
                obj["metadata"]["managedFields"] = new["metadata"]["managedFields"]
            strategy.prepare_for_status_update(obj, old)
            return obj
        if subresource == "finalize":
            obj = copy.deepcopy(old)
            obj.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            obj["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion",
                                                                     old["metadata"]["resourceVersion"])
            return obj
        meta, old_meta = new["metadata"], old["metadata"]
        for f in _SERVER_META:
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        if "status" in rt.subresources and subresource != "binding":
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if old_meta.get("deletionTimestamp"):
            # Being deleted: finalizers may be removed, not added.
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(rt, meta["name"], [forbidden(
                    "metadata.finalizers", f"no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {sorted(added)!r}".replace("'", '"'))])
        if subresource != "binding":
            strategy.prepare_for_update(new, old)
        strategy.default(new)
        strategy.default_for_storage(new)
        if rt.kind in GENERATION_KINDS and _content(new) != _content(old):
            meta["generation"] = (old_meta.get("generation") or 1) + 1
        return new

    def _should_delete_during_update(self, rt: ResourceType, obj: dict) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if rt.kind == "Namespace":
            return not (obj.get("spec") or {}).get("finalizers")
        if rt.kind == "Pod":
            return (meta.get("deletionGracePeriodSeconds") or 0) == 0
        return True

    # -- delete ----------------------------------------------------------------------------

    async def delete(self, rt: ResourceType, namespace: str | None, name: str, options: dict, *,
                     dry_run: bool = False) -> tuple[dict, bool]:
        """DELETE semantics; returns (object, deleted now)."""
        for attempt in range(64):
            obj = self.cache.get(rt, namespace, name)
            if obj is None:
                raise not_found(rt.plural, name, rt.group)
            meta = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise conflict(rt.plural, name, rt.group,
                               f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                               f"{meta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise conflict(rt.plural, name, rt.group,
                               f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                               f"ResourceVersion in object meta: {meta.get('resourceVersion')}")
            rv = int(meta["resourceVersion"])
            if rt.kind == "Namespace":
                return await self._delete_namespace(rt, obj, dry_run), False
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            if policy not in (None, "Orphan", "Background", "Foreground"):
                raise invalid(rt, name, [not_supported("propagationPolicy", policy,
                                                       ["Foreground", "Background", "Orphan", "nil"])])
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            grace = self._grace_period(rt, obj, options)
            if finalizers or grace:
                if meta.get("deletionTimestamp"):
                    # Already being deleted: only new finalizers or a shorter grace period change anything.
                    cur = meta.get("deletionGracePeriodSeconds") or 0
                    shorter = grace is not None and grace < cur
                    if finalizers == list(meta.get("finalizers") or []) and not shorter:
                        return obj, False
                new = copy.deepcopy(obj)
                nm = new["metadata"]
                if finalizers:
                    nm["finalizers"] = finalizers
                if grace:
                    nm["deletionTimestamp"] = _time_after(grace)
                    nm["deletionGracePeriodSeconds"] = grace
                else:
                    nm.setdefault("deletionTimestamp", m.now())
                    nm["deletionGracePeriodSeconds"] = 0
                if dry_run:
                    return new, False
                try:
                    kv = await self.store.update(object_key(rt, namespace, name), _encode(new), rv)
                except RevisionMismatchError as err:
                    await self.cache.wait_for(err.current.mod_revision, 2.0)
                    continue
                except KeyNotFoundError:
                    raise not_found(rt.plural, name, rt.group)
                await self._synced(kv.mod_revision)
                return _with_rv(new, kv.mod_revision), False
            finish = await self._admit(rt, "DELETE", None, obj)
            ok = False
            try:
                if dry_run:
                    return obj, True
                try:
                    kv = await self.store.delete(object_key(rt, namespace, name), rv)
                    ok = True
                except RevisionMismatchError as err:
                    await self.cache.wait_for(err.current.mod_revision, 2.0)
                    continue
                except KeyNotFoundError:
                    raise not_found(rt.plural, name, rt.group)
            finally:
                await _finish(finish, ok)
            await self._synced(kv.mod_revision)
            return obj, True
        raise conflict(rt.plural, name, rt.group)

    def _grace_period(self, rt: ResourceType, obj: dict, options: dict) -> int | None:
        """Pods bound to a node get a grace period; everything else goes at once."""
        if rt.kind != "Pod":
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        if not isinstance(grace, int) or isinstance(grace, bool):
            raise bad_request("DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: json: cannot "
                              "unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds of type int64")
        if grace < 0:
            grace = 1
        cur = obj["metadata"].get("deletionGracePeriodSeconds")
        if cur is not None and grace > cur:
            grace = cur
        return grace

    async def _delete_namespace(self, rt: ResourceType, obj: dict, dry_run: bool) -> dict:
        name = obj["metadata"]["name"]
        if name in IMMORTAL_NAMESPACES:
            raise forbidden_error("namespaces", name, "this namespace may not be deleted")
        if obj["metadata"].get("deletionTimestamp"):
            return obj

        def mark(cur: dict) -> dict:
            cur["metadata"]["deletionTimestamp"] = m.now()
            cur["metadata"]["deletionGracePeriodSeconds"] = 0
            cur.setdefault("status", {})["phase"] = "Terminating"
            return cur

        if dry_run:
            return mark(copy.deepcopy(obj))
        # Written directly (not through _update, which would keep the stored status).
        new = mark(copy.deepcopy(obj))
        kv = await self.store.update(object_key(rt, None, name), _encode(new), int(obj["metadata"]["resourceVersion"]))
        await self._synced(kv.mod_revision)
        return _with_rv(new, kv.mod_revision)

    async def force_delete(self, rt: ResourceType, namespace: str | None, name: str, rv: int | None) -> bool:
        """Remove an object now (GC, namespace controller, grace expiry); False when it changed first."""
        try:
            kv = await self.store.delete(object_key(rt, namespace, name), rv)
        except (RevisionMismatchError, KeyNotFoundError):
            return False
        await self._synced(kv.mod_revision)
        return True
