"""The REST endpoints: URL → resource → verb, with kube-apiserver's query parameters.

Owns request parsing (paths, query parameters, DeleteOptions, patch types,
fieldManager, dryRun, fieldValidation), lists with selectors and limit/continue,
watches (chunked JSON lines with BOOKMARKs), the status/scale/binding/log
subresources, and rendering as Tables when kubectl asks. Writes go through
rest.Registry; reads come from the watch cache.
"""

from __future__ import annotations

import base64
import copy
import logging
from typing import Any

import orjson
from aiohttp import web

from kubesvc.apiserver import codec, patching, subresources
from kubesvc.apiserver.rest import Registry, _parse_rv
from kubesvc.apiserver.watch import serve_watch
from kubesvc.apiserver.watchcache import WatchCache
from kubesvc.objects.errors import StatusError, bad_request, expired, method_not_allowed
from kubesvc.objects import schema as _schema
from kubesvc.objects.registry import ResourceType, by_plural
from kubesvc.objects.selectors import parse_field_selector, parse_label_selector
from kubesvc.objects.tables import to_table

log = logging.getLogger(__name__)




def not_found_path() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def field_manager(request: web.Request) -> str:
    fm = request.query.get("fieldManager")
    if fm:
        if len(fm) > 128:
            raise bad_request("fieldManager: Too long: must have at most 128 bytes")
        return fm
    ua = request.headers.get("User-Agent", "")
    return (ua.split("/")[0] or "unknown")[:128]


def dry_run(request: web.Request) -> bool:
    vals = request.query.getall("dryRun", [])
    for v in vals:
        if v != "All":
            raise bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(vals)


def field_validation(request: web.Request) -> str:
    """The fieldValidation directive (Warn by default); any other value is a 400 for every write."""
    mode = request.query.get("fieldValidation", "Warn")
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: '
                          '"Ignore", "Strict", "Warn"')
    return mode


def _int_param(q, name: str) -> int:
    """An integer query parameter; 400 (not 500) when it is not one."""
    raw = q.get(name) or "0"
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f'invalid {name}: strconv.ParseInt: parsing "{raw}": invalid syntax') from None


def _partial(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _table_version(request: web.Request) -> str | None:
    mt = codec.wants(request, "Table", "meta.k8s.io")
    return mt.params.get("v", "v1") if mt else None


class Handlers:
    """All resource endpoints of one API server."""

    def __init__(self, registry: Registry, cache: WatchCache):
        self.registry = registry
        self.cache = cache
        self.node_proxy_timeout = 5.0

    # -- routing ---------------------------------------------------------------------------

    def parse(self, request: web.Request) -> tuple[ResourceType, str | None, str | None, str | None, bool]:
        """(resource, namespace, name, subresource, legacy watch) from the URL, or 404."""
        parts = [p for p in request.path.split("/") if p]
        if parts[0] == "api":
            if len(parts) < 3 or parts[1] != "v1":
                raise not_found_path()
            group, version, rest = "", "v1", parts[2:]
        else:
            if len(parts) < 4:
                raise not_found_path()
            group, version, rest = parts[1], parts[2], parts[3:]
        legacy_watch = False
        if rest and rest[0] == "watch":
            legacy_watch, rest = True, rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise not_found_path()
        rt = by_plural(group, rest[0])
        if rt is None or rt.version != version or (namespace is not None and not rt.namespaced):
            raise not_found_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub and sub not in rt.subresources):
            raise not_found_path()
        return rt, namespace, name, sub, legacy_watch

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            rt, ns, name, sub, legacy_watch = self.parse(request)
            codec.check_acceptable(request.headers.get("Accept"))
            method = request.method
            all_namespaces = rt.namespaced and ns is None
            if name is None:
                if method == "GET":
                    if legacy_watch or _bool(request.query.get("watch")):
                        return await self.watch(request, rt, ns)
                    return await self.list(request, rt, ns)
                if all_namespaces:
                    # Only lists and watches span namespaces; writes name their namespace.
                    raise method_not_allowed()
                if method == "POST":
                    return await self.create(request, rt, ns)
                if method == "DELETE":
                    return await self.delete_collection(request, rt, ns)
                raise method_not_allowed()
            if all_namespaces:
                raise not_found_path()  # /api/v1/pods/NAME is no route in kube-apiserver either
            if legacy_watch:
                return await self.watch(request, rt, ns, name)
            if sub == "scale":
                return await self.scale(request, rt, ns, name)
            if sub == "binding":
                if method != "POST":
                    raise method_not_allowed()
                return await self.binding(request, rt, ns, name)
            if sub == "log":
                if method != "GET":
                    raise method_not_allowed()
                return await self.pod_log(request, rt, ns, name)
            if sub == "finalize":
                if method != "PUT":
                    raise method_not_allowed()
                return await self.update(request, rt, ns, name, "finalize")
            if method == "GET":
                return self.get(request, rt, ns, name)
            if method == "PUT":
                return await self.update(request, rt, ns, name, sub or "")
            if method == "PATCH":
                return await self.patch(request, rt, ns, name, sub or "")
            if method == "DELETE" and not sub:
                return await self.delete(request, rt, ns, name)
            raise method_not_allowed()
        except StatusError as err:
            return codec.error_response(err)

    # -- helpers ---------------------------------------------------------------------------

    async def _body(self, request: web.Request, rt: ResourceType) -> dict:
        body = await request.read()
        return codec.decode_body(request.headers.get("Content-Type"), body, rt.kind)

    def _validation(self, request: web.Request, obj: dict, rt: ResourceType,
                    patch: tuple[str, bytes] | None = None) -> list[str]:
        """Decoding checks as kube-apiserver's typed decoding does them: a value of the
        wrong JSON type is a 400; unknown fields are refused under fieldValidation=Strict,
        reported as warnings under Warn (the default) and dropped under Warn and Ignore."""
        mode = field_validation(request)
        msg = _schema.type_error(obj, rt)
        if msg:
            raise _schema.decode_error(rt, msg)
        if mode == "Ignore":
            _schema.prune_unknown(obj, rt)
            return []
        unknown = _schema.unknown_fields(obj, rt)
        if not unknown:
            return []
        if mode == "Strict":
            if patch is not None:
                raise patching.strict_patch_error(patch[0], patch[1], obj, unknown)
            raise _schema.strict_create_error(rt, unknown)
        _schema.prune_unknown(obj, rt)
        return [f'unknown field "{u}"' for u in unknown]

    def respond(self, request: web.Request, rt: ResourceType, obj: dict, status: int = 200,
                warnings: list[str] | None = None) -> web.Response:
        tv = _table_version(request)
        if tv:
            body = to_table(rt, [obj], include_object=request.query.get("includeObject", "Metadata"))
            body["apiVersion"] = f"meta.k8s.io/{tv}"
        elif codec.wants(request, "PartialObjectMetadata", "meta.k8s.io"):
            body = _partial(obj)
        else:
            body = obj
        resp = codec.response(body, status)
        for w in warnings or ():
            # One header per warning, as kube-apiserver sends them (RFC 7234 warn-code 299).
            resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return resp

    def selectors(self, request: web.Request, rt: ResourceType):
        ls = parse_label_selector(request.query.get("labelSelector"))
        fs = parse_field_selector(request.query.get("fieldSelector"), rt.kind)

        def matches(obj: dict) -> bool:
            return ls.matches((obj.get("metadata") or {}).get("labels")) and fs.matches(obj)

        return ls, fs, (None if ls.empty and fs.empty else matches)

    # -- get / list ------------------------------------------------------------------------

    def get(self, request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.Response:
        return self.respond(request, rt, self.registry.get(rt, ns, name))

    def filtered(self, rt: ResourceType, ns: str | None, fs, matches) -> list[dict]:
        name = fs.value("metadata.name") if not fs.empty else None
        if name is not None:
            if rt.namespaced and ns is None:
                fns = fs.value("metadata.namespace")
                objs = [o for o in self.cache.list(rt, fns) if o["metadata"]["name"] == name]
            else:
                o = self.cache.get(rt, ns, name)
                objs = [o] if o is not None else []
        else:
            objs = self.cache.list(rt, ns)
        return [o for o in objs if matches(o)] if matches else objs

    async def list(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.Response:
        q = request.query
        rv, rvm = q.get("resourceVersion", ""), q.get("resourceVersionMatch", "")
        if rvm:
            if not rv:
                raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
            if rvm not in ("Exact", "NotOlderThan"):
                raise bad_request(f'resourceVersionMatch: Unsupported value: "{rvm}": supported values: '
                                  '"Exact", "NotOlderThan"')
        exact: int | None = None  # a past revision to list at
        if rv and rv != "0":
            want = _parse_rv(rv)
            if want > self.cache.rev and not await self.cache.wait_for(want, 3.0):
                raise StatusError(504, "Timeout", f"Too large resource version: {want}, current: {self.cache.rev}",
                                  {"causes": [{"reason": "ResourceVersionTooLarge",
                                               "message": "Too large resource version"}],
                                   "retryAfterSeconds": 1})
            if rvm == "Exact":
                exact = want
        ls, fs, matches = self.selectors(request, rt)
        cont = q.get("continue")
        start: tuple[str, str] | None = None
        if cont:
            start_ns, start_name, exact = _decode_continue(cont)
            start = (start_ns, start_name)
        if exact is not None and exact < self.cache.rev:
            # A consistent snapshot at that revision, rebuilt from the watch window.
            past = self.cache.list_at(rt, ns, exact)
            if past is None:
                if cont:
                    raise StatusError(410, "Expired", _CONTINUE_EXPIRED)
                raise expired(f"too old resource version: {exact} ({self.cache.oldest})")
            objs = [o for o in past if matches(o)] if matches else past
            list_rev = exact
        else:
            list_rev = self.cache.rev
            objs = self.filtered(rt, ns, fs, matches)
        meta: dict[str, Any] = {"resourceVersion": str(list_rev)}
        if start is not None:
            objs = [o for o in objs if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit = _int_param(q, "limit")
        if limit > 0 and len(objs) > limit:
            last = objs[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(last.get("namespace", ""), last["name"], list_rev)
            meta["remainingItemCount"] = len(objs) - limit
            objs = objs[:limit]
        tv = _table_version(request)
        if tv:
            t = to_table(rt, objs, include_object=q.get("includeObject", "Metadata"), list_meta=meta)
            t["apiVersion"] = f"meta.k8s.io/{tv}"
            return codec.response(t)
        if codec.wants(request, "PartialObjectMetadataList", "meta.k8s.io"):
            return codec.response({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                   "metadata": meta, "items": [_partial(o) for o in objs]})
        # orjson serializes the cached dicts directly; no per-item copies.
        return web.Response(body=orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version,
                                               "metadata": meta, "items": objs}),
                            content_type="application/json")

    # -- watch -----------------------------------------------------------------------------

    async def watch(self, request: web.Request, rt: ResourceType, ns: str | None,
                    name: str | None = None) -> web.StreamResponse:
        return await serve_watch(self, request, rt, ns, name)

    # -- writes ----------------------------------------------------------------------------

    async def create(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.Response:
        obj = await self._body(request, rt)
        warnings = self._validation(request, obj, rt)
        out = await self.registry.create(rt, ns, obj, manager=field_manager(request), dry_run=dry_run(request))
        return self.respond(request, rt, out, 201, warnings)

    async def update(self, request: web.Request, rt: ResourceType, ns: str | None, name: str,
                     sub: str) -> web.Response:
        obj = await self._body(request, rt)
        warnings = self._validation(request, obj, rt)
        out, created = await self.registry.update(rt, ns, name, obj, subresource=sub,
                                                  manager=field_manager(request), dry_run=dry_run(request))
        return self.respond(request, rt, out, 201 if created else 200, warnings)

    async def patch(self, request: web.Request, rt: ResourceType, ns: str | None, name: str,
                    sub: str) -> web.Response:
        ct = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ct not in codec.PATCH_TYPES:
            raise StatusError(415, "UnsupportedMediaType",
                              f"the body of the request was in an unknown format - accepted media types include: "
                              f"{', '.join(codec.PATCH_TYPES)}")
        body = await request.read()
        manager = field_manager(request)
        dry = dry_run(request)
        warnings: list[str] = []
        if ct == patching.APPLY:
            if not request.query.get("fieldManager"):
                # PATCH with apply requires a manager (kubectl always sends one).
                raise bad_request("fieldManager is required for apply requests")
            # Apply bodies skip the generic decoding checks: server_side_apply refuses
            # undeclared fields itself, whatever the mode, as kube-apiserver's typed patch does.
            field_validation(request)
            applied = patching.parse_apply(body)
            force = _bool(request.query.get("force"))
            live = self.cache.get(rt, ns, name)
            if live is None and not sub:
                self.registry.check_body_kind(rt, applied)
                new = patching.server_side_apply(None, applied, manager, force, rt)
                new.setdefault("metadata", {})["name"] = name
                out = await self.registry.create(rt, ns, new, manager=manager, dry_run=dry, operation="Apply")
                return self.respond(request, rt, out, 201, warnings)
            self.registry.check_body_kind(rt, copy.deepcopy(applied))

            def fn(cur: dict) -> dict:
                return patching.server_side_apply(cur, applied, manager, force, rt, sub)
            out = await self.registry.guaranteed_update(rt, ns, name, fn, subresource=sub, manager="",
                                                        dry_run=dry, operation="Apply")
            return self.respond(request, rt, out, 200, warnings)
        holder: dict = {}

        def fn(cur: dict) -> dict:
            new = patching.apply_patch(ct, cur, body, rt)
            if not isinstance(new, dict):
                raise bad_request("the patch produced something that is not an object")
            holder["w"] = self._validation(request, new, rt, patch=(ct, body))
            return new
        out = await self.registry.guaranteed_update(rt, ns, name, fn, subresource=sub, manager=manager,
                                                    dry_run=dry)
        return self.respond(request, rt, out, 200, holder.get("w"))

    async def _delete_options(self, request: web.Request) -> dict:
        body = await request.read()
        opts: dict = {}
        if body.strip():
            try:
                opts = orjson.loads(body)
            except orjson.JSONDecodeError:
                opts = codec.decode_body(request.headers.get("Content-Type"), body, "DeleteOptions")
            if not isinstance(opts, dict):
                raise bad_request("the object provided is unrecognized (must be of type DeleteOptions)")
        q = request.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = _int_param(q, "gracePeriodSeconds")
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            opts["orphanDependents"] = _bool(q["orphanDependents"])
        return opts

    async def delete(self, request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.Response:
        opts = await self._delete_options(request)
        obj, deleted = await self.registry.delete(rt, ns, name, opts, dry_run=dry_run(request) or
                                                  "All" in (opts.get("dryRun") or []))
        if not deleted:
            return self.respond(request, rt, obj, 200)
        details = {"name": name, "kind": rt.plural, "uid": obj["metadata"].get("uid")}
        if rt.group:
            details = {"name": name, "group": rt.group, "kind": rt.plural, "uid": obj["metadata"].get("uid")}
        return codec.response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                               "details": details})

    async def delete_collection(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.Response:
        opts = await self._delete_options(request)
        ls, fs, matches = self.selectors(request, rt)
        dry = dry_run(request) or "All" in (opts.get("dryRun") or [])
        items = []
        for o in self.filtered(rt, ns, fs, matches):
            try:
                obj, _ = await self.registry.delete(rt, o["metadata"].get("namespace"), o["metadata"]["name"],
                                                    opts, dry_run=dry)
                items.append(obj)
            except StatusError as err:
                if err.code != 404:
                    raise
        return codec.response({"kind": rt.list_kind, "apiVersion": rt.api_version,
                               "metadata": {"resourceVersion": str(self.cache.rev)}, "items": items})

    # -- subresources ----------------------------------------------------------------------

    async def scale(self, request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.Response:
        return await subresources.scale(self, request, rt, ns, name)

    async def binding(self, request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.Response:
        return await subresources.binding(self, request, rt, ns, name)

    async def pod_log(self, request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.StreamResponse:
        """Proxies to the pod's node agent, as kube-apiserver proxies to the kubelet.

        The agent is reached at the node's InternalIP (status.addresses) on
        status.daemonEndpoints.kubeletEndpoint.Port, path
        /containerLogs/{namespace}/{pod}/{container} with the same query
        parameters (follow, tailLines, timestamps, previous, sinceSeconds, limitBytes).
        """
        from kubesvc.apiserver import nodeproxy
        return await nodeproxy.pod_log(self, request, rt, ns, name)


_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of "
    "the results. Continuing with the provided token results in an inconsistent list - objects that were "
    "created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")


def _encode_continue(ns: str, name: str, rev: int) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": f"{ns}/{name}" if ns else name + "\x00"})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = orjson.loads(raw)
        start = d["start"]
        rev = int(d["rv"])
    except Exception:
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                          "(version meta.k8s.io/v1)")
    if start.endswith("\x00"):
        return "", start[:-1], rev
    ns, _, name = start.partition("/")
    return ns, name, rev
