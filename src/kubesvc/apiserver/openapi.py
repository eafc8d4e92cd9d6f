"""The OpenAPI documents kube-apiserver publishes, for the kinds kubesvc serves.

Owns ``/openapi/v3`` (the index of group-versions, each with a
``serverRelativeURL`` carrying the document's hash), ``/openapi/v3/api/v1`` and
``/openapi/v3/apis/<group>/<version>`` (OpenAPI 3.0 JSON), and ``/openapi/v2``
(Swagger 2.0 JSON).

kubectl reads them to (a) learn that the server validates fields itself — a
PATCH operation of the kind's group-version-kind that takes the
``fieldValidation`` query parameter — so it sends ``fieldValidation=Strict``
instead of validating client-side, (b) compute client-side apply patches from the
``x-kubernetes-patch-*`` extensions, and (c) answer ``kubectl explain``. The
schemas come from :mod:`kubesvc.objects.schema` (a maintained package); the paths
are built from :mod:`kubesvc.objects.registry`, so only served kinds appear.

kubectl asks for /openapi/v2 in protobuf only (gnostic's encoding, written by
:mod:`kubesvc.apiserver.openapi_proto`); kubectl 1.32 reads it only as a fallback
when v3 fails and for ``kubectl explain --output=plaintext-openapiv2``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import Any, Iterable

import orjson
from aiohttp import web

from kubesvc.objects import schema as sch
from kubesvc.objects.registry import RESOURCES, ResourceType

V3_PREFIX = "#/components/schemas/"
V2_PREFIX = "#/definitions/"

PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what clients ask for
# what kube-openapi answers with ("@" is not valid in a media type, Go's mime parser refuses it)
PROTOBUF_V2_RETURNED = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
PROTOBUF_V3 = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
                "application/merge-patch+json", "application/strategic-merge-patch+json")
_MEDIA = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_WATCH_MEDIA = _MEDIA + ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")

_SCALE = ("autoscaling", "v1", "Scale")


# ---------------------------------------------------------------------------
# schemas: kubernetes-validate's JSON-schema flavour back to OpenAPI


def _openapi_type(t: Any) -> str | None:
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        return rest[0] if rest else None
    return t


def _convert(node: Any, prefix: str, in_kind_root: bool = False) -> Any:
    if isinstance(node, list):
        return [_convert(x, prefix) for x in node]
    if not isinstance(node, dict):
        return node
    name = sch.ref_name(node)
    if name is not None:
        ref = {"$ref": prefix + name}
        siblings = {k: _convert(v, prefix) for k, v in node.items() if k != "$ref"}
        if not siblings:
            return ref
        if prefix == V3_PREFIX:
            # kube-apiserver's v3 documents wrap a $ref that has siblings in allOf
            return {"allOf": [ref], **siblings}
        return {**ref, **{k: v for k, v in siblings.items() if k.startswith("x-") or k == "description"}}
    one_of = node.get("oneOf")
    if isinstance(one_of, list) and one_of and all(isinstance(o, dict) and "type" in o for o in one_of):
        # int-or-string and quantity are written as oneOf by the package; the API says string
        types = {_openapi_type(o["type"]) for o in one_of}
        out = {k: _convert(v, prefix) for k, v in node.items() if k != "oneOf"}
        out["type"] = "string"
        if "integer" in types:
            out["format"] = "int-or-string"
        return out
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "type":
            t = _openapi_type(v)
            if t is not None:
                out["type"] = t
        elif k == "properties":
            props = {}
            for pk, pv in v.items():
                pv = _convert(pv, prefix)
                if in_kind_root and pk in ("apiVersion", "kind") and isinstance(pv, dict):
                    pv.pop("enum", None)  # added by the package, not in kube-apiserver's schema
                props[pk] = pv
            out["properties"] = props
        elif k in ("$schema", "$id"):
            continue
        else:
            out[k] = _convert(v, prefix)
    return out


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        name = sch.ref_name(node)
        if name is not None:
            out.add(name)
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _closure(names: Iterable[str]) -> list[str]:
    defs = sch.definitions()
    seen: set[str] = set()
    todo = [n for n in names if n in defs]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        found: set[str] = set()
        _refs(defs[n], found)
        todo.extend(x for x in found if x in defs and x not in seen)
    return sorted(seen)


def _schemas(names: Iterable[str], prefix: str) -> dict[str, Any]:
    defs = sch.definitions()
    out = {}
    for n in _closure(names):
        node = defs[n]
        out[n] = _convert(node, prefix, in_kind_root="x-kubernetes-group-version-kind" in node)
    return out


# ---------------------------------------------------------------------------
# paths and operations, built once for both formats


def _group_word(group: str) -> str:
    if not group:
        return "Core"
    first = group.split(".")[0]
    return "".join(p[:1].upper() + p[1:] for p in first.split("-"))


def _tag(rt: ResourceType) -> str:
    return f"{(rt.group.split('.')[0] if rt.group else 'core')}_{rt.version}"


def _op_prefix(rt: ResourceType) -> str:
    return _group_word(rt.group) + rt.version[:1].upper() + rt.version[1:]


_PARAM_DOCS = {
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". "
                            "Servers that do not implement bookmarks may ignore this flag and bookmarks are "
                            "sent at the server's discretion."),
    "continue": ("string", "The continue option should be set when retrieving more results from the server."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. "
                      "Defaults to everything."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. "
                      "Defaults to everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a request may "
                        "be served from."),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is applied to list "
                             "calls."),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a stream of add, "
              "update, and remove notifications. Specify resourceVersion."),
    "dryRun": ("string", "When present, indicates that modifications should not be persisted. An invalid or "
               "unrecognized dryRun directive will result in an error response and no further processing of the "
               "request. Valid values are: - All: all dry run stages will be processed"),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is making these "
                     "changes. The value must be less than or 128 characters long, and only contain printable "
                     "characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle objects in the request "
                        "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This "
                        "will ignore any unknown fields that are silently dropped from the object, and will ignore "
                        "all but the last duplicate field that the decoder encounters. This is the default behavior "
                        "prior to v1.23. - Warn: This will send a warning via the standard warning response header "
                        "for each unknown field that is dropped from the object, and for each duplicate field that "
                        "is encountered. The request will still succeed if there are no other errors, and will only "
                        "persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will "
                        "fail the request with a BadRequest error if any unknown fields would be dropped from the "
                        "object, or if any duplicate fields are present. The error returned from the server will "
                        "contain all unknown and duplicate fields encountered."),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting "
              "fields owned by other people. Force flag must be unset for non-apply patch requests."),
    "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be deleted."),
    "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated "
                         "in 1.7."),
    "propagationPolicy": ("string", "Whether and how garbage collection will be performed. Acceptable values "
                          "are: 'Orphan', 'Background', 'Foreground'."),
    "pretty": ("string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent "
               "indicates a browser or command-line HTTP tool (curl and wget)."),
}

_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")


class _Op:
    """One operation, format-neutral."""

    def __init__(self, method: str, op_id: str, action: str, gvk: tuple[str, str, str], description: str,
                 query: tuple[str, ...] = (), body: str | None = None, body_types: tuple[str, ...] = (),
                 response: str | None = None, created: bool = False, accepted: bool = False,
                 media: tuple[str, ...] = _MEDIA, tag: str = ""):
        self.method, self.op_id, self.action, self.gvk = method, op_id, action, gvk
        self.description, self.query, self.body, self.body_types = description, query, body, body_types
        self.response, self.created, self.accepted, self.media, self.tag = response, created, accepted, media, tag


def _ops_for(rt: ResourceType) -> dict[str, tuple[list[tuple[str, str]], list[_Op]]]:
    """path -> (path parameters [(name, description)], operations) for one resource."""
    kind_def = sch.definition_name(rt.group, rt.version, rt.kind)
    list_def = sch.definition_name(rt.group, rt.version, rt.list_kind)
    if kind_def is None:
        return {}
    gvk = (rt.group, rt.version, rt.kind)
    pre = _op_prefix(rt)
    ns_word = "Namespaced" if rt.namespaced else ""
    tag = _tag(rt)
    k = rt.kind
    status_def = _META + "Status"
    paths: dict[str, tuple[list[tuple[str, str]], list[_Op]]] = {}

    coll = rt.collection_path("{namespace}" if rt.namespaced else None)
    item = coll + "/{name}"
    ns_param = [("namespace", "object name and auth scope, such as for teams and projects")] if rt.namespaced else []
    name_param = [("name", f"name of the {k}")]

    coll_ops = [
        _Op("get", f"list{pre}{ns_word}{k}", "list", gvk, f"list or watch objects of kind {k}",
            _LIST_PARAMS, response=list_def, media=_WATCH_MEDIA, tag=tag),
        _Op("post", f"create{pre}{ns_word}{k}", "post", gvk, f"create a {k}",
            _WRITE_PARAMS, body=kind_def, body_types=("*/*",), response=kind_def, created=True, accepted=True,
            tag=tag),
        _Op("delete", f"delete{pre}Collection{ns_word}{k}", "deletecollection", gvk,
            f"delete collection of {k}", _LIST_PARAMS + _DELETE_PARAMS, body=_META + "DeleteOptions",
            body_types=("*/*",), response=status_def, tag=tag),
    ]
    paths[coll] = (ns_param, coll_ops)
    item_ops = [
        _Op("get", f"read{pre}{ns_word}{k}", "get", gvk, f"read the specified {k}", response=kind_def, tag=tag),
        _Op("put", f"replace{pre}{ns_word}{k}", "put", gvk, f"replace the specified {k}", _WRITE_PARAMS,
            body=kind_def, body_types=("*/*",), response=kind_def, created=True, tag=tag),
        _Op("patch", f"patch{pre}{ns_word}{k}", "patch", gvk, f"partially update the specified {k}",
            _WRITE_PARAMS + ("force",), body=_META + "Patch", body_types=_PATCH_TYPES, response=kind_def,
            created=True, tag=tag),
        _Op("delete", f"delete{pre}{ns_word}{k}", "delete", gvk, f"delete a {k}", _DELETE_PARAMS,
            body=_META + "DeleteOptions", body_types=("*/*",), response=status_def, accepted=True, tag=tag),
    ]
    paths[item] = (ns_param + name_param, item_ops)
    if rt.namespaced:
        paths[rt.collection_path(None)] = ([], [
            _Op("get", f"list{pre}{k}ForAllNamespaces", "list", gvk, f"list or watch objects of kind {k}",
                _LIST_PARAMS, response=list_def, media=_WATCH_MEDIA, tag=tag)])
    for sub in rt.subresources:
        if sub == "status":
            paths[item + "/status"] = (ns_param + name_param, [
                _Op("get", f"read{pre}{ns_word}{k}Status", "get", gvk, f"read status of the specified {k}",
                    response=kind_def, tag=tag),
                _Op("put", f"replace{pre}{ns_word}{k}Status", "put", gvk, f"replace status of the specified {k}",
                    _WRITE_PARAMS, body=kind_def, body_types=("*/*",), response=kind_def, created=True, tag=tag),
                _Op("patch", f"patch{pre}{ns_word}{k}Status", "patch", gvk,
                    f"partially update status of the specified {k}", _WRITE_PARAMS + ("force",),
                    body=_META + "Patch", body_types=_PATCH_TYPES, response=kind_def, created=True, tag=tag),
            ])
        elif sub == "scale":
            scale_def = sch.definition_name(*_SCALE)
            if scale_def is None:
                continue
            paths[item + "/scale"] = ([("name", "name of the Scale")] + ns_param, [
                _Op("get", f"read{pre}{ns_word}{k}Scale", "get", _SCALE, f"read scale of the specified {k}",
                    response=scale_def, tag=tag),
                _Op("put", f"replace{pre}{ns_word}{k}Scale", "put", _SCALE, f"replace scale of the specified {k}",
                    _WRITE_PARAMS, body=scale_def, body_types=("*/*",), response=scale_def, created=True, tag=tag),
                _Op("patch", f"patch{pre}{ns_word}{k}Scale", "patch", _SCALE,
                    f"partially update scale of the specified {k}", _WRITE_PARAMS + ("force",),
                    body=_META + "Patch", body_types=_PATCH_TYPES, response=scale_def, created=True, tag=tag),
            ])
    return paths


def _gvk_ext(gvk: tuple[str, str, str]) -> dict:
    return {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}


def _v3_param(name: str, where: str = "query", description: str | None = None, required: bool = False) -> dict:
    typ, doc = _PARAM_DOCS.get(name, ("string", description or ""))
    p: dict[str, Any] = {"name": name, "in": where, "description": description or doc,
                         "schema": {"type": typ, "uniqueItems": True}}
    if required:
        p["required"] = True
    return p


def _v2_param(name: str, where: str = "query", description: str | None = None, required: bool = False) -> dict:
    typ, doc = _PARAM_DOCS.get(name, ("string", description or ""))
    p: dict[str, Any] = {"uniqueItems": True, "type": typ, "description": description or doc,
                         "name": name, "in": where}
    if required:
        p["required"] = True
    return p


def _v3_op(op: _Op) -> dict:
    content = {m: {"schema": {"$ref": V3_PREFIX + op.response}} for m in op.media} if op.response else {}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    if op.created:
        responses["201"] = {"description": "Created", "content": content}
    if op.accepted:
        responses["202"] = {"description": "Accepted", "content": content}
    responses["401"] = {"description": "Unauthorized"}
    out: dict[str, Any] = {"tags": [op.tag], "description": op.description, "operationId": op.op_id}
    if op.query:
        out["parameters"] = [_v3_param(q) for q in op.query]
    if op.body:
        out["requestBody"] = {"content": {t: {"schema": {"$ref": V3_PREFIX + op.body}} for t in op.body_types},
                              "required": op.method in ("post", "put", "patch")}
    out["responses"] = responses
    out["x-kubernetes-action"] = op.action
    out["x-kubernetes-group-version-kind"] = _gvk_ext(op.gvk)
    return out


def _v2_op(op: _Op) -> dict:
    resp = {"description": "OK"}
    if op.response:
        resp["schema"] = {"$ref": V2_PREFIX + op.response}
    responses: dict[str, Any] = {"200": resp}
    if op.created:
        responses["201"] = {**resp, "description": "Created"}
    if op.accepted:
        responses["202"] = {**resp, "description": "Accepted"}
    responses["401"] = {"description": "Unauthorized"}
    params = []
    if op.body:
        params.append({"name": "body", "in": "body", "required": op.method in ("post", "put", "patch"),
                       "schema": {"$ref": V2_PREFIX + op.body}})
    params += [_v2_param(q) for q in op.query]
    out: dict[str, Any] = {"description": op.description,
                           "consumes": list(op.body_types) if op.method == "patch" else ["*/*"],
                           "produces": list(op.media), "schemes": ["https"], "tags": [op.tag],
                           "operationId": op.op_id}
    if params:
        out["parameters"] = params
    out["responses"] = responses
    out["x-kubernetes-action"] = op.action
    out["x-kubernetes-group-version-kind"] = _gvk_ext(op.gvk)
    return out


def _gv_key(rt: ResourceType) -> str:
    return f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"


def _served_gvs() -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rt in RESOURCES:
        if sch.kind_schema(rt) is not None:
            out.setdefault(_gv_key(rt), []).append(rt)
    return out


def _schema_roots(rts: list[ResourceType]) -> list[str]:
    names = [_META + n for n in ("Status", "DeleteOptions", "Patch", "WatchEvent")]
    for rt in rts:
        for kind in (rt.kind, rt.list_kind):
            n = sch.definition_name(rt.group, rt.version, kind)
            if n:
                names.append(n)
        if "scale" in rt.subresources:
            n = sch.definition_name(*_SCALE)
            if n:
                names.append(n)
    return names


def _info() -> dict:
    return {"title": "Kubernetes", "version": "v1.32.0"}


def build_v3(gv: str) -> dict | None:
    """The OpenAPI 3.0 document of one group-version ("api/v1", "apis/apps/v1"), or None."""
    rts = _served_gvs().get(gv)
    if not rts:
        return None
    paths: dict[str, Any] = {}
    for rt in rts:
        for path, (pparams, ops) in _ops_for(rt).items():
            item: dict[str, Any] = {op.method: _v3_op(op) for op in ops}
            params = [_v3_param(n, "path", d, required=True) for n, d in pparams]
            params.append(_v3_param("pretty"))
            item["parameters"] = params
            paths[path] = item
    return {"openapi": "3.0.0", "info": _info(), "paths": dict(sorted(paths.items())),
            "components": {"schemas": _schemas(_schema_roots(rts), V3_PREFIX),
                           "securitySchemes": {"BearerToken": {"type": "apiKey",
                                                               "description": "Bearer Token authentication",
                                                               "name": "authorization", "in": "header"}}}}


def build_v2() -> dict:
    """The Swagger 2.0 document of every served kind."""
    paths: dict[str, Any] = {}
    roots: list[str] = []
    for gv, rts in _served_gvs().items():
        roots += _schema_roots(rts)
        for rt in rts:
            for path, (pparams, ops) in _ops_for(rt).items():
                item: dict[str, Any] = {op.method: _v2_op(op) for op in ops}
                params = [_v2_param(n, "path", d, required=True) for n, d in pparams]
                params.append(_v2_param("pretty"))
                item["parameters"] = params
                paths[path] = item
    return {"swagger": "2.0", "info": _info(), "paths": dict(sorted(paths.items())),
            "definitions": _schemas(roots, V2_PREFIX),
            "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey",
                                                    "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}]}


def _hash(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest().upper()


@functools.cache
def v3_documents() -> dict[str, tuple[bytes, str]]:
    """group-version path -> (JSON bytes, hash); built once per process."""
    out = {}
    for gv in _served_gvs():
        doc = build_v3(gv)
        if doc is not None:
            data = orjson.dumps(doc)
            out[gv] = (data, _hash(data))
    return out


@functools.cache
def v3_index() -> bytes:
    docs = v3_documents()
    return orjson.dumps({"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={h}"}
                                   for gv, (_, h) in sorted(docs.items())}})


@functools.cache
def v2_document() -> tuple[bytes, str]:
    data = orjson.dumps(build_v2())
    return data, _hash(data)


# ---------------------------------------------------------------------------
# HTTP


def _not_acceptable(accepted: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"only the following media types are accepted: {accepted}",
            "reason": "NotAcceptable", "code": 406}
    return web.Response(status=406, body=orjson.dumps(body), content_type="application/json")


def _accepts_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "*/*", "application/*"):
            return True
    return False


def _json_response(request: web.Request, data: bytes, digest: str, immutable: bool) -> web.StreamResponse:
    etag = f'"{digest}"'
    headers = {"ETag": etag, "Vary": "Accept",
               "Cache-Control": "public, immutable" if immutable else "no-cache, private"}
    if immutable:
        headers["Expires"] = "Fri, 01 Jan 2100 00:00:00 GMT"
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="application/json", headers=headers)


@functools.cache
def v2_protobuf() -> tuple[bytes, str]:
    from kubesvc.apiserver.openapi_proto import document
    data = document(orjson.loads(v2_document()[0]))
    return data, _hash(data)


async def _v2(request: web.Request) -> web.StreamResponse:
    accept = request.headers.get("Accept", "").lower()
    if PROTOBUF_V2.lower() in accept or PROTOBUF_V2_RETURNED in accept:
        data, digest = v2_protobuf()
        etag = f'"{digest}"'
        headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "no-cache, private",
                   "Content-Type": PROTOBUF_V2_RETURNED}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, headers=headers)
    if not _accepts_json(request):
        return _not_acceptable(f"application/json, {PROTOBUF_V2}")
    data, digest = v2_document()
    return _json_response(request, data, digest, immutable=False)


async def _v3_index(request: web.Request) -> web.StreamResponse:
    data = v3_index()
    return _json_response(request, data, _hash(data), immutable=False)


async def _v3_gv(request: web.Request) -> web.StreamResponse:
    gv = request.match_info["gv"].strip("/")
    found = v3_documents().get(gv)
    if found is None:
        return web.Response(status=404, text="404 page not found\n")
    if not _accepts_json(request):
        return _not_acceptable("application/json")
    data, digest = found
    want = request.query.get("hash")
    if want is not None and want != digest:
        raise web.HTTPMovedPermanently(f"/openapi/v3/{gv}?hash={digest}")
    return _json_response(request, data, digest, immutable=want == digest)


def routes() -> list[web.RouteDef]:
    """The OpenAPI routes for the API server's aiohttp application."""
    return [
        web.get("/openapi/v2", _v2),
        web.get("/openapi/v3", _v3_index),
        web.get("/openapi/v3/", _v3_index),
        web.get(r"/openapi/v3/{gv:.+}", _v3_gv),
    ]


def unknown_fields(obj: dict, rt: ResourceType) -> list[str]:
    """Field paths of obj its kind's schema does not know (for fieldValidation Strict/Warn)."""
    return sch.unknown_fields(obj, rt)


def warm() -> None:
    """Build every document now (the server calls this at start so the first kubectl does not wait)."""
    v3_documents()
    v3_index()
    v2_document()
    v2_protobuf()


def schema_copy(name: str) -> dict:
    """A definition in OpenAPI v3 form (for tests and `kubesvc explain`)."""
    return copy.deepcopy(_convert(sch.definitions()[name], V3_PREFIX))
