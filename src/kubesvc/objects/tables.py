"""Server-side printing: objects as meta.k8s.io/v1 Tables, as kube-apiserver answers ``as=Table``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and
prints what it gets: the column definitions (wide-only columns have priority 1)
and each row's cells. :func:`to_table` builds that Table for any served kind, with
the per-kind printers of :mod:`kubesvc.objects.printers` and, for kinds without
one, kube-apiserver's default convertor (Name, Created At).

Like kube-apiserver, rows always carry the wide cells; kubectl drops the
priority-1 columns unless ``-o wide``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from kubesvc.objects.printers import PRINTERS, Column, Printer
from kubesvc.objects.printers.base import META, doc, parse_time
from kubesvc.objects.registry import ResourceType

API_VERSION = "meta.k8s.io/v1"
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def _default_row(obj: dict, now: float) -> tuple[list[Any], None]:
    # rest.defaultTableConvertor: the name and creationTimestamp in RFC3339 (UTC)
    meta = obj.get("metadata") or {}
    created = parse_time(meta.get("creationTimestamp"))
    stamp = (datetime.fromtimestamp(created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
             if created is not None else None)
    return [meta.get("name", ""), stamp], None


DEFAULT = Printer((
    Column("Name", "string", doc(META, "name"), "name"),
    Column("Created At", "date", doc(META, "creationTimestamp")),
), _default_row)


def printer_for(rt: ResourceType) -> Printer:
    """The printer of a kind; kube-apiserver's default convertor for kinds without one."""
    return PRINTERS.get((rt.group, rt.kind), DEFAULT)


def column_definitions(rt: ResourceType) -> list[dict]:
    return [c.definition() for c in printer_for(rt).columns]


def _row_object(obj: dict, include_object: str) -> dict | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    # meta.AsPartialObjectMetadata keeps the whole ObjectMeta
    return {"kind": "PartialObjectMetadata", "apiVersion": API_VERSION,
            "metadata": dict(obj.get("metadata") or {})}


def to_table(rt: ResourceType, objs: list[dict], *, include_object: str = "Metadata",
             list_meta: dict | None = None, include_headers: bool = True,
             now: float | None = None) -> dict:
    """A meta.k8s.io/v1 Table of objs (all of kind rt), as kube-apiserver would answer.

    include_object is the request's ``includeObject`` (None, Metadata or Object);
    list_meta is the ListMeta of a list (resourceVersion, continue,
    remainingItemCount) and None for a single object, whose resourceVersion the
    Table then carries; include_headers=False leaves the column definitions out,
    as for every watch event after the first. now (POSIX seconds) fixes the clock
    the AGE cells are measured against.
    """
    if include_object not in INCLUDE_OBJECT:
        from kubesvc.objects.errors import bad_request
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    now = time.time() if now is None else now
    printer = printer_for(rt)
    rows = []
    for obj in objs:
        cells, conditions = printer.row(obj, now)
        row: dict[str, Any] = {"cells": cells}
        if conditions:
            row["conditions"] = [dict(c) for c in conditions]
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    if list_meta is not None:
        metadata = {k: v for k, v in list_meta.items()
                    if k in ("resourceVersion", "continue", "remainingItemCount", "selfLink") and v not in (None, "")}
    elif len(objs) == 1 and (objs[0].get("metadata") or {}).get("resourceVersion"):
        metadata = {"resourceVersion": objs[0]["metadata"]["resourceVersion"]}
    else:
        metadata = {}
    return {
        "kind": "Table",
        "apiVersion": API_VERSION,
        "metadata": metadata,
        "columnDefinitions": [c.definition() for c in printer.columns] if include_headers else [],
        "rows": rows,
    }


def wants_table(accept: str | None) -> bool:
    """Whether an Accept header asks for a meta.k8s.io/v1 (or v1beta1) Table, as kubectl get does."""
    if not accept:
        return False
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            params[k] = v
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return True
    return False
