"""Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``) as JSON-shaped dicts.

kubectl's typed commands (``create namespace``, ``create deployment``, ``create
service``, ``create configmap``; ``expose`` and ``scale`` send JSON) and every
client-go typed client (Scale, DeleteOptions, Binding, status updates...) send
their objects as protobuf: the 4-byte magic ``k8s\\x00`` and a ``runtime.Unknown``
envelope whose ``raw`` is the kind's ``generated.proto`` message. :func:`decode`
gives back exactly the dict the same object would have been as JSON, so the API
server handles both the same way.

Messages come from :mod:`kubesvc.apiserver.proto.schema` (our own definitions of
the public field numbers), turned into descriptors here once at import time; the
``protobuf`` package does the wire decoding.

Responses stay JSON: client-go asks for ``application/vnd.kubernetes.protobuf,
application/json`` and accepts either, so the server never has to encode protobuf.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory, unknown_fields

from kubesvc.apiserver.proto import schema
from kubesvc.objects.errors import StatusError, bad_request

log = logging.getLogger(__name__)

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

_SCALARS = {
    "s": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "i32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "i64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "b": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "y": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}
_ZERO = {"s": "", "i32": 0, "i64": 0, "b": False, "y": b""}
# map kinds -> value type (scalar code or "pkg.Message")
_MAPS = {"map": "s", "mapy": "y", "mapq": "resource.Quantity"}


@dataclass(frozen=True)
class _Field:
    """One field of a message as the decoder walks it."""

    name: str
    number: int
    type: str  # scalar code, map kind, or a fully qualified "alias.Message"
    repeated: bool
    pointer: bool  # Go pointer: keep zero values
    always: bool  # no omitempty: keep zero values
    inline: bool  # embedded struct: merge into the parent
    is_map: bool = False
    is_message: bool = False


def _parse_field(pkg: str, token: str) -> _Field:
    name, _, rest = token.partition("=")
    flags = ""
    while rest and rest[-1] in "*?!^":
        flags += rest[-1]
        rest = rest[:-1]
    num, _, typ = rest.partition(":")
    typ = typ or "s"
    if typ not in _SCALARS and typ not in _MAPS and "." not in typ:
        typ = f"{pkg}.{typ}"
    is_map = typ in _MAPS
    return _Field(name, int(num), typ, "*" in flags, "?" in flags, "!" in flags, "^" in flags,
                  is_map, not is_map and typ not in _SCALARS)


# "alias.Message" -> fields
FIELDS: dict[str, tuple[_Field, ...]] = {
    f"{pkg}.{msg}": tuple(_parse_field(pkg, t) for t in spec.split())
    for pkg, msgs in schema.MESSAGES.items()
    for msg, spec in msgs.items()
}
_BY_NAME: dict[str, dict[str, _Field]] = {ref: {f.name: f for f in fs} for ref, fs in FIELDS.items()}


def _full_name(ref: str) -> str:
    pkg, _, msg = ref.partition(".")
    return f".{schema.PACKAGES[pkg]}.{msg}"


def _entry_name(field: str) -> str:
    # protobuf's rule for a map field's implicit entry message
    return "".join(p[:1].upper() + p[1:] for p in field.split("_")) + "Entry"


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    FDP = descriptor_pb2.FieldDescriptorProto
    files: list[str] = []
    for pkg, msgs in schema.MESSAGES.items():
        fdp = descriptor_pb2.FileDescriptorProto(
            name=f"kubesvc/{pkg}.proto", package=schema.PACKAGES[pkg], syntax="proto2")
        fdp.dependency.extend(files)
        for msg_name in msgs:
            mdp = fdp.message_type.add(name=msg_name)
            for f in FIELDS[f"{pkg}.{msg_name}"]:
                fd = mdp.field.add(name=f.name, number=f.number, json_name=f.name)
                if f.is_map:
                    entry = mdp.nested_type.add(name=_entry_name(f.name))
                    entry.options.map_entry = True
                    entry.field.add(name="key", number=1, type=FDP.TYPE_STRING, label=FDP.LABEL_OPTIONAL)
                    value = _MAPS[f.type]
                    if value in _SCALARS:
                        entry.field.add(name="value", number=2, type=_SCALARS[value], label=FDP.LABEL_OPTIONAL)
                    else:
                        entry.field.add(name="value", number=2, type=FDP.TYPE_MESSAGE,
                                        type_name=_full_name(value), label=FDP.LABEL_OPTIONAL)
                    fd.type = FDP.TYPE_MESSAGE
                    fd.type_name = f".{schema.PACKAGES[pkg]}.{msg_name}.{entry.name}"
                    fd.label = FDP.LABEL_REPEATED
                    continue
                fd.label = FDP.LABEL_REPEATED if f.repeated else FDP.LABEL_OPTIONAL
                if f.is_message:
                    fd.type = FDP.TYPE_MESSAGE
                    fd.type_name = _full_name(f.type)
                else:
                    fd.type = _SCALARS[f.type]
        pool.Add(fdp)
        files.append(fdp.name)
    return pool


_POOL = _build_pool()
_CLASSES: dict[str, type[message.Message]] = {}


def message_class(ref: str) -> type[message.Message]:
    """The generated class of a schema message, e.g. ``message_class("core.Service")``."""
    cls = _CLASSES.get(ref)
    if cls is None:
        cls = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(_full_name(ref)[1:]))
        _CLASSES[ref] = cls
    return cls


# ---------------------------------------------------------------- to JSON

def _rfc3339(seconds: int, nanos: int, micro: bool) -> str | None:
    if seconds == 0 and nanos == 0 or seconds == -62135596800:  # Go's zero time
        return None
    t = datetime.fromtimestamp(seconds, tz=timezone.utc)
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _go_duration(ns: int) -> str:
    """A time.Duration as Go's String() prints it (e.g. 1h2m3s, 1.5s, 0s)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = _trim(rem / 1e9) + "s"
    out = (f"{h}h{m}m" if h else f"{m}m" if m else "") + s
    return sign + out


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def _special(ref: str, msg: message.Message) -> tuple[bool, Any]:
    """(handled, value) for the apimachinery types whose JSON is not an object."""
    if ref in ("meta.Time", "meta.MicroTime"):
        return True, _rfc3339(msg.seconds, msg.nanos, ref == "meta.MicroTime")
    if ref == "intstr.IntOrString":
        return True, msg.strVal if msg.type == 1 else msg.intVal
    if ref == "resource.Quantity":
        return True, msg.string
    if ref == "meta.Duration":
        return True, _go_duration(msg.duration)
    if ref == "meta.FieldsV1":
        return True, orjson.loads(msg.Raw) if msg.Raw else {}
    if ref == "runtime.RawExtension":
        return True, orjson.loads(msg.raw) if msg.raw else None
    return False, None


def _scalar(f: _Field, v: Any) -> Any:
    return base64.b64encode(v).decode() if f.type == "y" else v


def _value(ref: str, msg: message.Message) -> Any:
    handled, v = _special(ref, msg)
    return v if handled else to_dict(ref, msg)


def to_dict(ref: str, msg: message.Message) -> dict:
    """A decoded message as its JSON object (camelCase keys, unset and omitempty-zero fields left out)."""
    _note_unknown(ref, msg)
    specs = _BY_NAME[ref]
    out: dict[str, Any] = {}
    # ListFields walks only what the body set, in C: much cheaper than asking every field
    for fd, value in msg.ListFields():
        f = specs[fd.name]
        if f.is_map:
            kind = _MAPS[f.type]
            if kind == "s":
                out[f.name] = dict(value)
            elif kind == "y":
                out[f.name] = {k: base64.b64encode(v).decode() for k, v in value.items()}
            else:
                out[f.name] = {k: _value(kind, v) for k, v in value.items()}
        elif f.repeated:
            if f.is_message:
                out[f.name] = [_value(f.type, m) for m in value]
            else:
                out[f.name] = [_scalar(f, v) for v in value]
        elif f.is_message:
            v = _value(f.type, value)
            if f.inline and isinstance(v, dict):
                out.update(v)
            elif v is not None:
                out[f.name] = v
        elif value != _ZERO[f.type] or f.pointer or f.always:
            out[f.name] = _scalar(f, value)
    return out


def _note_unknown(ref: str, msg: message.Message) -> None:
    # kube-apiserver's decoder skips unknown fields too; say so, since here it
    # means a field our schema does not define yet.
    try:
        unknown = unknown_fields.UnknownFieldSet(msg)
    except Exception:  # pragma: no cover - older protobuf runtimes
        return
    if len(unknown):
        log.warning("protobuf %s: ignoring unknown field(s) %s", ref,
                    sorted({u.field_number for u in unknown}))


# ---------------------------------------------------------------- from JSON

def _parse_time(text: str) -> tuple[int, int]:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()), t.microsecond * 1000


def _fill_special(ref: str, value: Any, msg: message.Message) -> bool:
    if ref in ("meta.Time", "meta.MicroTime"):
        msg.seconds, msg.nanos = _parse_time(value)
    elif ref == "intstr.IntOrString":
        if isinstance(value, str):
            msg.type, msg.strVal = 1, value
        else:
            msg.type, msg.intVal = 0, value
    elif ref == "resource.Quantity":
        msg.string = str(value)
    elif ref == "meta.FieldsV1":
        msg.Raw = orjson.dumps(value)
    elif ref == "runtime.RawExtension":
        msg.raw = orjson.dumps(value)
    else:
        return False
    return True


def _to_scalar(typ: str, value: Any) -> Any:
    return base64.b64decode(value) if typ == "y" else value


def from_dict(ref: str, obj: dict, msg: message.Message) -> message.Message:
    """Fill msg (of schema message ref) from its JSON object; the inverse of :func:`to_dict`."""
    for f in FIELDS[ref]:
        if f.inline:
            if any(k in obj for k in (g.name for g in FIELDS[f.type])):
                from_dict(f.type, obj, getattr(msg, f.name))
            continue
        if f.name not in obj or obj[f.name] is None:
            continue
        value = obj[f.name]
        if f.is_map:
            target = getattr(msg, f.name)
            kind = _MAPS[f.type]
            for k, v in value.items():
                if kind in _SCALARS:
                    target[k] = _to_scalar(kind, v)
                else:
                    _fill(kind, v, target[k])
        elif f.repeated:
            target = getattr(msg, f.name)
            for v in value:
                if f.is_message:
                    _fill(f.type, v, target.add())
                else:
                    target.append(_to_scalar(f.type, v))
        elif f.is_message:
            _fill(f.type, value, getattr(msg, f.name))
        else:
            setattr(msg, f.name, _to_scalar(f.type, value))
    return msg


def _fill(ref: str, value: Any, msg: message.Message) -> None:
    if not _fill_special(ref, value, msg):
        from_dict(ref, value, msg)
    msg.SetInParent()  # an empty object is still a present field


def encode(obj: dict) -> bytes:
    """A JSON-shaped object as a Kubernetes protobuf body (magic + runtime.Unknown).

    The server itself always answers JSON; this is for clients and tests that
    need to send what client-go sends.
    """
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    ref = schema.KINDS.get(key)
    if ref is None:
        raise ValueError(f"no protobuf message for {key[0]} {key[1]}")
    name = f"{ref[0]}.{ref[1]}"
    inner = from_dict(name, obj, message_class(name)())
    envelope = message_class("runtime.Unknown")()
    envelope.typeMeta.apiVersion, envelope.typeMeta.kind = key
    envelope.raw = inner.SerializeToString()
    envelope.contentEncoding = ""
    envelope.contentType = ""
    return MAGIC + envelope.SerializeToString()


# ---------------------------------------------------------------- requests

def _summarize(data: bytes, max_length: int = 30) -> str:
    # as kube-apiserver's summarizeData
    if not data:
        return "<empty>"
    if data[:1] == b"{":
        text = data[:max_length].decode("utf-8", "replace")
        return text + " ..." if len(data) > max_length else text
    return binascii.hexlify(data[:max_length]).decode() + (" ..." if len(data) > max_length else "")


def decode(body: bytes, expected_kind: str | None = None) -> dict:
    """A protobuf request body as the dict its JSON form would give.

    expected_kind (the kind the URL serves, e.g. "Namespace") only words errors
    the way kube-apiserver does; checking the decoded kind against the URL is the
    caller's job. Raises StatusError 400 BadRequest for a malformed body.
    """
    target = expected_kind or "Object"
    if not body.startswith(MAGIC):
        raise _unrecognized(target, "provided data does not appear to be a protobuf message, "
                                    "expected prefix [107 56 115 0]", body)
    envelope = message_class("runtime.Unknown")()
    try:
        envelope.ParseFromString(body[len(MAGIC):])
    except message.DecodeError as e:
        raise _unrecognized(target, _proto_error(e), body)
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    if not kind:
        raise _unrecognized(target, "Object 'Kind' is missing in 'runtime.TypeMeta{APIVersion:"
                                    f'"{api_version}", Kind:""}}\'', body)
    target = expected_kind or kind
    if envelope.contentEncoding:
        raise _cannot_handle(kind, api_version, target,
                             f'unsupported content encoding "{envelope.contentEncoding}"')
    ref = schema.KINDS.get((api_version, kind))
    if ref is None:
        group, _, version = api_version.rpartition("/")
        gv = f"{group}/{version}" if group else version
        raise _cannot_handle(kind, api_version, target,
                             f'no kind "{kind}" is registered for version "{gv}" in scheme '
                             f'"k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30"')
    pkg, name = ref
    msg = message_class(f"{pkg}.{name}")()
    try:
        msg.ParseFromString(envelope.raw)
        obj = to_dict(f"{pkg}.{name}", msg)
    except message.DecodeError as e:
        raise _cannot_handle(kind, api_version, target, _proto_error(e))
    except (ValueError, OverflowError, OSError) as e:  # bad UTF-8 or embedded JSON, a time out of range
        raise _cannot_handle(kind, api_version, target, f"proto: {e}")
    # TypeMeta goes first, as in the JSON the client would have sent
    return {"kind": kind, "apiVersion": api_version, **obj}


def _proto_error(e: Exception) -> str:
    # the protobuf library only says the wire format is corrupt; Go's decoder says
    # "unexpected EOF" for the usual cause, a body cut short
    return "unexpected EOF"


def _unrecognized(target: str, detail: str, body: bytes) -> StatusError:
    return bad_request(f"the object provided is unrecognized (must be of type {target}): "
                       f"{detail} ({_summarize(body)})")


def _cannot_handle(kind: str, api_version: str, target: str, detail: str) -> StatusError:
    version = api_version.rpartition("/")[2]
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {target}: {detail}')


def is_protobuf(content_type: str | None) -> bool:
    """Whether a Content-Type header names Kubernetes protobuf."""
    return bool(content_type) and content_type.split(";")[0].strip().lower() == CONTENT_TYPE
