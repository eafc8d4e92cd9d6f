"""Label selectors (every operator) and field selectors, as Kubernetes parses them.

Label selectors come as strings (``app=web,tier in (a,b),!canary,ver>2``, the
query-parameter form) or as metav1.LabelSelector dicts (matchLabels /
matchExpressions, the form in specs and ownerReferences' controllers).
Field selectors support ``=``, ``==`` and ``!=`` on the fields each kind
exposes (the same list kube-apiserver accepts; anything else is refused with
its message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from kubesvc.objects.errors import StatusError, bad_request


@dataclass(frozen=True)
class Requirement:
    """One label requirement: key, operator (in, notin, exists, !, =, ==, !=, gt, lt), values."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op in ("=", "==", "in"):
            return has and v in self.values
        if self.op in ("!=", "notin"):
            return not has or v not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("gt", "lt"):
            if not has:
                return False
            try:
                a, b = int(v), int(self.values[0])
            except ValueError:
                return False
            return a > b if self.op == "gt" else a < b
        return False


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # a nil metav1.LabelSelector in some contexts selects nothing

    def matches(self, labels: dict | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op == "exists":
                parts.append(r.key)
            elif r.op == "!":
                parts.append("!" + r.key)
            elif r.op in ("in", "notin"):
                parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
            elif r.op in ("gt", "lt"):
                parts.append(f"{r.key}{'>' if r.op == 'gt' else '<'}{r.values[0]}")
            else:
                parts.append(f"{r.key}{r.op}{r.values[0]}")
        return ",".join(parts)


_TOKEN = re.compile(r"\s*(\(|\)|,|==|=|!=|!|>|<|[^\s(),=!<>]+)")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form (labels.Parse); raises StatusError 400 when malformed."""
    if not text or not text.strip():
        return LabelSelector()
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def err(msg: str) -> StatusError:
        return bad_request(f"unable to parse requirement: {msg}")

    while i < len(toks):
        t = toks[i]
        if t == "!":
            if i + 1 >= len(toks) or not _is_ident(toks[i + 1]):
                raise err(f"found '{toks[i+1] if i + 1 < len(toks) else ''}', expected: identifier")
            reqs.append(Requirement(toks[i + 1], "!"))
            i += 2
        elif _is_ident(t):
            key = t
            nxt = toks[i + 1] if i + 1 < len(toks) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                val = toks[i + 2] if i + 2 < len(toks) and _is_ident(toks[i + 2]) else ""
                reqs.append(Requirement(key, nxt, (val,)))
                i += 3 if val else 2
            elif nxt in (">", "<"):
                if i + 2 >= len(toks) or not toks[i + 2].lstrip("-").isdigit():
                    raise err("for 'Gt', 'Lt' operators, the value must be an integer")
                reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (toks[i + 2],)))
                i += 3
            elif nxt in ("in", "notin"):
                if i + 2 >= len(toks) or toks[i + 2] != "(":
                    raise err(f"found '{toks[i+2] if i + 2 < len(toks) else ''}', expected: '('")
                j = i + 3
                vals: list[str] = []
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        vals.append(toks[j])
                    j += 1
                if j >= len(toks):
                    raise err("found '', expected: ')'")
                reqs.append(Requirement(key, nxt, tuple(vals)))
                i = j + 1
            else:
                raise err(f"found '{nxt}', expected: in, notin, =, ==, !=, gt, lt")
        else:
            raise err(f"found '{t}', expected: !, identifier, or 'end of string'")
        if i < len(toks):
            if toks[i] != ",":
                raise err(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    from kubesvc.objects.meta import is_qualified_name, is_valid_label_value
    for r in reqs:
        msgs = is_qualified_name(r.key)
        if msgs:
            raise bad_request(f"unable to parse requirement: {_invalid_label(r.key, msgs)}")
        for v in r.values:
            if r.op not in ("gt", "lt") and (m := is_valid_label_value(v)):
                raise bad_request(f"unable to parse requirement: values[0][{r.key}]: Invalid value: \"{v}\": "
                                  + "; ".join(m))
    return LabelSelector(tuple(reqs))


def _invalid_label(key: str, msgs: list[str]) -> str:
    return f'<nil>: Invalid value: "{key}": ' + "; ".join(msgs)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            break
        out.append(m.group(1))
        pos = m.end()
    return out


def _is_ident(t: str) -> bool:
    return t not in ("(", ")", ",", "=", "==", "!=", "!", ">", "<")


def from_label_selector(sel: dict | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, {} everything."""
    if sel is None:
        return LabelSelector(nothing=True)
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in sel.get("matchExpressions") or []:
        op = ops.get(e.get("operator"))
        if op is None:
            raise bad_request(f"{e.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(e.get("key", ""), op, tuple(e.get("values") or ())))
    return LabelSelector(tuple(reqs))


def selector_from_set(labels: dict) -> LabelSelector:
    """A selector matching a label set (Service's spec.selector, ReplicaSet matchLabels)."""
    return LabelSelector(tuple(Requirement(k, "=", (v,)) for k, v in sorted(labels.items())))


# -- field selectors -----------------------------------------------------------------------

def _get(obj: dict, path: str) -> Any:
    cur: Any = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _pod_ips(obj: dict) -> str:
    return ",".join(ip.get("ip", "") for ip in (obj.get("status") or {}).get("podIPs") or [])


# kind -> extra field -> getter (metadata.name/namespace are always there).
FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {
    "Pod": {f: (lambda p: (lambda o: _str(_get(o, p))))(f) for f in (
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")}
    | {"status.podIPs": _pod_ips},
    "Event": {f: (lambda p: (lambda o: _str(_get(o, p))))(f) for f in (
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
        "reason", "reportingComponent", "source", "type")}
    | {"source": lambda o: _str(_get(o, "source.component") or o.get("reportingComponent"))},
    "Namespace": {"status.phase": lambda o: _str(_get(o, "status.phase"))},
    "Node": {"spec.unschedulable": lambda o: _str(bool(_get(o, "spec.unschedulable")))},
    "ReplicaSet": {"status.replicas": lambda o: _str(_get(o, "status.replicas") or 0)},
    "Service": {"spec.clusterIP": lambda o: _str(_get(o, "spec.clusterIP")),
                "spec.type": lambda o: _str(_get(o, "spec.type"))},
}

_COMMON = {"metadata.name": lambda o: _str(_get(o, "metadata.name")),
           "metadata.namespace": lambda o: _str(_get(o, "metadata.namespace"))}


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of (getter, op, value) terms over one kind's selectable fields."""

    terms: tuple[tuple[str, str, str], ...] = ()
    getters: tuple[Callable[[dict], str], ...] = ()

    def matches(self, obj: dict) -> bool:
        for (_, op, value), get in zip(self.terms, self.getters):
            if (get(obj) == value) != (op != "!="):
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.terms

    def value(self, field: str) -> str | None:
        """The value an equality term requires for field (used to narrow lookups)."""
        for f, op, v in self.terms:
            if f == field and op != "!=":
                return v
        return None


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    """fields.ParseSelector + the kind's field label conversion; 400 on unknown fields."""
    if not text or not text.strip():
        return FieldSelector()
    known = {**_COMMON, **FIELDS.get(kind, {})}
    terms, getters = [], []
    for part in _split_unescaped(text):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            i = part.find(op)
            if i > 0:
                field, value = part[:i].strip(), part[i + len(op):].strip()
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        if field not in known:
            raise bad_request(f'field label not supported: {field}')
        terms.append((field, "!=" if op == "!=" else "=", _unescape(value)))
        getters.append(known[field])
    return FieldSelector(tuple(terms), tuple(getters))


def _split_unescaped(text: str) -> list[str]:
    parts, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)
