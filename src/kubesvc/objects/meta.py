"""Generic object metadata: name rules, labels/annotations validation, and the
fields the API server owns (uid, creationTimestamp, generation, managedFields).

Every kind goes through these, as kube-apiserver's ValidateObjectMeta and
rest.BeforeCreate/BeforeUpdate do; messages are kube-apiserver's, word for word.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from typing import Any, Callable

from kubesvc.objects.errors import FieldError, forbidden, invalid, required

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"

_dns1123_label = re.compile("^" + DNS1123_LABEL_FMT + "$")
_dns1123_subdomain = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_dns1035_label = re.compile("^" + DNS1035_LABEL_FMT + "$")
_qualified_name = re.compile("^" + _QUALIFIED_NAME_FMT + "$")
_label_value = re.compile("^" + _LABEL_VALUE_FMT + "$")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    ex = ""
    if examples:
        ex = "(e.g. " + ",  or ".join(f"'{e}'" for e in examples) + ", "
        return f"{msg} {ex}regex used for validation is '{fmt}')"
    return f"{msg} (regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _dns1123_label.match(value):
        errs.append(_regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                                 "or '-', and must start and end with an alphanumeric character",
                                 DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _dns1123_subdomain.match(value):
        errs.append(_regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                 "characters, '-' or '.', and must start and end with an alphanumeric character",
                                 DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _dns1035_label.match(value):
        errs.append(_regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                                 "start with an alphabetic character, and end with an alphanumeric character",
                                 DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_path_segment_name(value: str) -> list[str]:
    if value in (".", ".."):
        return [f'may not be \'{value}\'']
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


def is_qualified_name(value: str) -> list[str]:
    """A label or annotation key: [prefix/]name (validation.IsQualifiedName)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [_regex_error("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
                             "must start and end with an alphanumeric character", _QUALIFIED_NAME_FMT,
                             "MyName", "my.name", "123-abc")
                .replace("')", "') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if name and not _qualified_name.match(name):
        errs.append("name part " + _regex_error("must consist of alphanumeric characters, '-', '_' or '.', and "
                                                "must start and end with an alphanumeric character",
                                                _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _label_value.match(value):
        errs.append(_regex_error("a valid label must be an empty string or consist of alphanumeric characters, "
                                 "'-', '_' or '.', and must start and end with an alphanumeric character",
                                 _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# Which name rule each kind's metadata.name follows in kube-apiserver.
NAME_RULES: dict[str, Callable[[str], list[str]]] = {
    "Namespace": is_dns1123_label,
    "Service": is_dns1035_label,
    "Event": is_path_segment_name,
    "ConfigMap": is_dns1123_subdomain,
}


def name_errors(kind: str, name: str) -> list[str]:
    return NAME_RULES.get(kind, is_dns1123_subdomain)(name)


_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def generate_name(base: str) -> str:
    """generateName + 5 random characters, trimmed as names.SimpleNameGenerator does."""
    if len(base) > 58:
        base = base[:58]
    return base + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))


_now_cache: tuple[int, str] = (0, "")


def now() -> str:
    """The current time as Kubernetes serializes metav1.Time (RFC 3339, seconds, Z)."""
    global _now_cache
    sec = int(time.time())
    if _now_cache[0] != sec:  # formatted once per second: writes ask for it several times each
        _now_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)))
    return _now_cache[1]


# uids need to be unique, not secret: a PRNG seeded from the OS once is enough, and
# os.urandom per object costs more than the rest of a create on a loaded machine.
_uid_random = random.Random(int.from_bytes(os.urandom(16), "big") ^ time.time_ns())


def new_uid() -> str:
    return str(uuid.UUID(int=_uid_random.getrandbits(128), version=4))


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if labels is None:
        return errs
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map")]
    for k, v in labels.items():
        for msg in is_qualified_name(k):
            errs.append(invalid(path, k, msg))
        if not isinstance(v, str):
            errs.append(invalid(f"{path}", v, "must be a string"))
            continue
        for msg in is_valid_label_value(v):
            errs.append(invalid(path, v, msg))
    return errs


_TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if annotations is None:
        return errs
    if not isinstance(annotations, dict):
        return [invalid(path, annotations, "must be a map")]
    total = 0
    for k, v in annotations.items():
        for msg in is_qualified_name(k.lower()):
            errs.append(invalid(path, k, msg))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > _TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError("TooLong", path, "", f"may not be more than {_TOTAL_ANNOTATION_SIZE} bytes"))
    return errs


def validate_object_meta(obj: dict, kind: str, namespaced: bool) -> list[FieldError]:
    """ValidateObjectMeta: name (per the kind's rule), namespace presence, labels, annotations."""
    meta = obj.get("metadata") or {}
    errs: list[FieldError] = []
    name = meta.get("name") or ""
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs.extend(invalid("metadata.name", name, m) for m in name_errors(kind, name))
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            errs.append(required("metadata.namespace"))
        else:
            errs.extend(invalid("metadata.namespace", ns, m) for m in is_dns1123_label(ns))
    elif ns:
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), "metadata.annotations"))
    fin = meta.get("finalizers") or []
    for i, f in enumerate(fin):
        if not isinstance(f, str) or is_qualified_name(f):
            errs.extend(invalid(f"metadata.finalizers[{i}]", f, m) for m in is_qualified_name(str(f)))
    return errs


def validate_object_meta_update(obj: dict, old: dict) -> list[FieldError]:
    """The immutable metadata fields (ValidateObjectMetaUpdate)."""
    meta, old_meta = obj.get("metadata") or {}, old.get("metadata") or {}
    errs = []
    for f in ("name", "namespace", "uid", "creationTimestamp"):
        if meta.get(f) != old_meta.get(f) and meta.get(f) is not None:
            errs.append(invalid(f"metadata.{f}", meta.get(f), "field is immutable"))
    return errs


# -- managedFields -----------------------------------------------------------------------

def field_set(obj: Any) -> dict:
    """A FieldsV1 set for an object: every map key, with lists treated as atomic values.

    Simpler than structured-merge-diff (no list element keys) but the same shape,
    so `kubectl get -o yaml --show-managed-fields` shows believable entries.
    """
    out: dict = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out[f"f:{k}"] = field_set(v) if isinstance(v, dict) else {}
    return out


_SERVER_OWNED = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields",
                 "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "name", "namespace")


def record_update(obj: dict, manager: str, operation: str, api_version: str, subresource: str = "") -> None:
    """Set (replace) this manager's managedFields entry for an Update, in place."""
    meta = obj.setdefault("metadata", {})
    content = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if subresource == "status":
        content = {"status": obj.get("status")} if obj.get("status") else {}
    elif subresource == "" and "status" in content:
        content.pop("status")
    m = {k: v for k, v in meta.items() if k not in _SERVER_OWNED}
    fields = field_set(content)
    if m:
        fields = {"f:metadata": field_set(m), **fields}
    entries = [e for e in meta.get("managedFields") or []
               if not (e.get("manager") == manager and e.get("operation") == operation
                       and e.get("subresource", "") == subresource)]
    entry = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now(),
             "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    if fields:
        entries.append(entry)
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)
