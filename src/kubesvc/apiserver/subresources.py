"""The subresources that are not "the same object, part of it": /scale (autoscaling/v1
Scale of deployments and replicasets) and pods/binding (the scheduler's write)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from kubesvc.apiserver import codec, patching
from kubesvc.objects.errors import StatusError, conflict, method_not_allowed
from kubesvc.objects.errors import invalid as field_invalid
from kubesvc.objects.meta import now
from kubesvc.objects.registry import ResourceType
from kubesvc.objects.selectors import from_label_selector

if TYPE_CHECKING:
    from kubesvc.apiserver.handlers import Handlers

SCALE_RT = ResourceType("autoscaling", "v1", "Scale", "scale", "scale", True)


def _field_manager(request):
    from kubesvc.apiserver.handlers import field_manager
    return field_manager(request)


def _dry_run(request):
    from kubesvc.apiserver.handlers import dry_run
    return dry_run(request)


def scale_of(rt: ResourceType, obj: dict) -> dict:
    """The autoscaling/v1 Scale of a deployment or replicaset."""
    md = obj["metadata"]
    sel = (obj.get("spec") or {}).get("selector") or {}
    try:
        sel_str = str(from_label_selector(sel)) if sel else ""
    except StatusError:
        sel_str = ""
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in md},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": sel_str}}


async def scale(h: "Handlers", request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.Response:
    """GET/PUT/PATCH of /scale: reads and writes spec.replicas of the parent."""
    method = request.method
    if method == "GET":
        return h.respond(request, SCALE_RT, scale_of(rt, h.registry.get(rt, ns, name)))
    if method not in ("PUT", "PATCH"):
        raise method_not_allowed()
    body = await request.read()
    ct = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if method == "PUT":
        s = codec.decode_body(ct, body, "Scale")
    else:
        s = None

    def fn(cur: dict) -> dict:
        cur_scale = scale_of(rt, cur)
        if s is not None:
            new_scale = s
        elif ct == patching.APPLY:
            new_scale = patching.merge_patch(cur_scale, patching.parse_apply(body))
        else:
            new_scale = patching.apply_patch(ct, cur_scale, body, SCALE_RT)
        # Go omits a zero replicas (omitempty), so client-go scaling to 0 sends `spec: {}`.
        replicas = (new_scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise StatusError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                              f'Invalid value: {replicas}: must be greater than or equal to 0',
                              {"name": name, "group": "autoscaling", "kind": "Scale",
                               "causes": [field_invalid("spec.replicas", replicas,
                                                   "must be greater than or equal to 0").cause()]})
        cur.setdefault("spec", {})["replicas"] = replicas
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            cur["metadata"]["resourceVersion"] = rv
        return cur
    out = await h.registry.guaranteed_update(rt, ns, name, fn, subresource="scale",
                                                manager=_field_manager(request), dry_run=_dry_run(request))
    return h.respond(request, SCALE_RT, scale_of(rt, out))


async def binding(h: "Handlers", request: web.Request, rt: ResourceType, ns: str | None, name: str) -> web.Response:
    """POST pods/NAME/binding: set spec.nodeName (once) and the PodScheduled condition."""
    b = codec.decode_body(request.headers.get("Content-Type"), await request.read(), "Binding")
    target = (b.get("target") or {}).get("name")
    if not target:
        raise StatusError(422, "Invalid", f'Binding "{name}" is invalid: target.name: Required value',
                          {"name": name, "kind": "Binding",
                           "causes": [{"reason": "FieldValueRequired", "message": "Required value",
                                       "field": "target.name"}]})

    def fn(cur: dict) -> dict:
        if cur["metadata"].get("deletionTimestamp"):
            raise conflict("pods/binding", name, "", f"pod {name} is being deleted, cannot be assigned to a host")
        node = (cur.get("spec") or {}).get("nodeName")
        if node:
            raise conflict("pods/binding", name, "", f'pod {name} is already assigned to node "{node}"')
        cur.setdefault("spec", {})["nodeName"] = target
        conds = (cur.setdefault("status", {})).setdefault("conditions", [])
        if not any(c.get("type") == "PodScheduled" for c in conds):
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now()})
        return cur
    # The binding changes spec and status together, as the pods/binding REST does.
    await h.registry.guaranteed_update(rt, ns, name, fn, subresource="binding",
                                          manager=_field_manager(request))
    return codec.response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                           "code": 201}, 201)
