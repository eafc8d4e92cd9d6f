"""The Swagger 2.0 document in gnostic's protobuf encoding, which kubectl asks /openapi/v2 for.

client-go requests ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``
and decodes an ``openapi.v2.Document`` (google/gnostic's OpenAPIv2.proto). This
module owns turning the JSON document of :mod:`kubesvc.apiserver.openapi` into
that message, with a small protobuf wire writer over the public field numbers
(the parts kube-apiserver's documents use). Values of ``Any`` fields (vendor
extensions, defaults, enums) are carried as YAML text, as gnostic does.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import yaml


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _Msg:
    """A message being written: fields appended in number order by the callers."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def bytes_(self, num: int, data: bytes) -> None:
        self.buf += _varint(num << 3 | 2) + _varint(len(data)) + data

    def str_(self, num: int, s: Any) -> None:
        if s:
            self.bytes_(num, str(s).encode())

    def strs(self, num: int, items: Any) -> None:
        for s in items or ():
            self.bytes_(num, str(s).encode())

    def bool_(self, num: int, v: Any) -> None:
        if v:
            self.buf += _varint(num << 3) + b"\x01"

    def int_(self, num: int, v: Any) -> None:
        if v:
            self.buf += _varint(num << 3) + _varint(int(v))

    def double(self, num: int, v: Any) -> None:
        if v is not None:
            self.buf += _varint(num << 3 | 1) + struct.pack("<d", float(v))

    def msg(self, num: int, m: "_Msg | None") -> None:
        if m is not None:
            self.bytes_(num, bytes(m.buf))


def _any(value: Any) -> _Msg:
    m = _Msg()
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True)
    if text.endswith("...\n"):
        text = text[:-4]
    m.str_(2, text)
    return m


def _named(name: str, value: _Msg) -> _Msg:
    m = _Msg()
    m.str_(1, name)
    m.msg(2, value)
    return m


def _extensions(m: _Msg, num: int, d: dict) -> None:
    for k in sorted(d):
        if k.startswith("x-"):
            m.msg(num, _named(k, _any(d[k])))


def schema(s: dict) -> _Msg:
    m = _Msg()
    m.str_(1, s.get("$ref"))
    m.str_(2, s.get("format"))
    m.str_(3, s.get("title"))
    m.str_(4, s.get("description"))
    if "default" in s:
        m.msg(5, _any(s["default"]))
    m.double(6, s.get("multipleOf"))
    m.double(7, s.get("maximum"))
    m.bool_(8, s.get("exclusiveMaximum"))
    m.double(9, s.get("minimum"))
    m.bool_(10, s.get("exclusiveMinimum"))
    m.int_(11, s.get("maxLength"))
    m.int_(12, s.get("minLength"))
    m.str_(13, s.get("pattern"))
    m.int_(14, s.get("maxItems"))
    m.int_(15, s.get("minItems"))
    m.bool_(16, s.get("uniqueItems"))
    m.int_(17, s.get("maxProperties"))
    m.int_(18, s.get("minProperties"))
    m.strs(19, s.get("required"))
    for e in s.get("enum") or ():
        m.msg(20, _any(e))
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        item = _Msg()
        item.msg(1, schema(ap))
        m.msg(21, item)
    elif isinstance(ap, bool):
        item = _Msg()
        item.buf += _varint(2 << 3) + (b"\x01" if ap else b"\x00")
        m.msg(21, item)
    t = s.get("type")
    if t:
        ti = _Msg()
        ti.strs(1, t if isinstance(t, list) else [t])
        m.msg(22, ti)
    items = s.get("items")
    if isinstance(items, dict):
        ii = _Msg()
        ii.msg(1, schema(items))
        m.msg(23, ii)
    for sub in s.get("allOf") or ():
        m.msg(24, schema(sub))
    props = s.get("properties")
    if isinstance(props, dict):
        pm = _Msg()
        for k in sorted(props):
            pm.msg(1, _named(k, schema(props[k])))
        m.msg(25, pm)
    m.bool_(27, s.get("readOnly"))
    _extensions(m, 31, s)
    return m


def _parameter(p: dict) -> _Msg:
    param = _Msg()
    if p.get("in") == "body":
        body = _Msg()
        body.str_(1, p.get("description"))
        body.str_(2, p.get("name"))
        body.str_(3, "body")
        body.bool_(4, p.get("required"))
        if isinstance(p.get("schema"), dict):
            body.msg(5, schema(p["schema"]))
        param.msg(1, body)
    else:
        sub = _Msg()
        where = p.get("in")
        sub.bool_(1, p.get("required"))
        sub.str_(2, where)
        sub.str_(3, p.get("description"))
        sub.str_(4, p.get("name"))
        if where == "path":
            sub.str_(5, p.get("type"))
            sub.bool_(19, p.get("uniqueItems"))
            slot = 4
        else:  # query
            sub.str_(6, p.get("type"))
            sub.bool_(20, p.get("uniqueItems"))
            slot = 3
        nb = _Msg()
        nb.msg(slot, sub)
        param.msg(2, nb)
    item = _Msg()
    item.msg(1, param)
    return item


def _operation(op: dict) -> _Msg:
    m = _Msg()
    m.strs(1, op.get("tags"))
    m.str_(3, op.get("description"))
    m.str_(5, op.get("operationId"))
    m.strs(6, op.get("produces"))
    m.strs(7, op.get("consumes"))
    for p in op.get("parameters") or ():
        m.msg(8, _parameter(p))
    responses = _Msg()
    for code in sorted(op.get("responses") or {}):
        r = op["responses"][code]
        resp = _Msg()
        resp.str_(1, r.get("description"))
        if isinstance(r.get("schema"), dict):
            si = _Msg()
            si.msg(1, schema(r["schema"]))
            resp.msg(2, si)
        rv = _Msg()
        rv.msg(1, resp)
        responses.msg(1, _named(code, rv))
    m.msg(9, responses)
    m.strs(10, op.get("schemes"))
    _extensions(m, 13, op)
    return m


_METHODS: tuple[tuple[str, int], ...] = (("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("patch", 8))


def document(doc: dict) -> bytes:
    """gnostic openapi.v2.Document bytes for a Swagger 2.0 JSON document."""
    m = _Msg()
    m.str_(1, doc.get("swagger", "2.0"))
    info = _Msg()
    info.str_(1, (doc.get("info") or {}).get("title"))
    info.str_(2, (doc.get("info") or {}).get("version"))
    m.msg(2, info)
    paths = _Msg()
    for path in sorted(doc.get("paths") or {}):
        item = doc["paths"][path]
        pi = _Msg()
        for method, num in _METHODS:
            if method in item:
                pi.msg(num, _operation(item[method]))
        for p in item.get("parameters") or ():
            pi.msg(9, _parameter(p))
        paths.msg(2, _named(path, pi))
    m.msg(8, paths)
    defs = _Msg()
    for name in sorted(doc.get("definitions") or {}):
        defs.msg(1, _named(name, schema(doc["definitions"][name])))
    m.msg(9, defs)
    for req in doc.get("security") or ():
        sr = _Msg()
        for name in sorted(req):
            arr = _Msg()
            arr.strs(1, req[name])
            sr.msg(1, _named(name, arr))
        m.msg(12, sr)
    sec_defs = doc.get("securityDefinitions") or {}
    if sec_defs:
        sd = _Msg()
        for name in sorted(sec_defs):
            d = sec_defs[name]
            key = _Msg()
            key.str_(1, d.get("type"))
            key.str_(2, d.get("name"))
            key.str_(3, d.get("in"))
            key.str_(4, d.get("description"))
            item = _Msg()
            item.msg(2, key)
            sd.msg(1, _named(name, item))
        m.msg(13, sd)
    return bytes(m.buf)


Encoder = Callable[[dict], bytes]
