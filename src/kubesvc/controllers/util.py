"""Small helpers every controller shares: selectors, pod readiness, owner references,
Kubernetes-style random names and pod-template hashes, timestamps.

These are the rules kube-controller-manager applies (pkg/api/v1/pod, apimachinery's
labels and util/rand); they live here once so every controller agrees.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Iterable, Mapping

import orjson

# k8s.io/apimachinery/pkg/util/rand: no vowels (no words) and no look-alikes (0/1/3, l/1...).
SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"

_rng = random.SystemRandom()


def rand_string(n: int = 5) -> str:
    """rand.String(n): what generateName appends (`myapp-deployment-67b6dfcd8-rc7t8`)."""
    return "".join(_rng.choice(SAFE_ALPHANUMS) for _ in range(n))


def safe_encode_string(s: str) -> str:
    """rand.SafeEncodeString: map each byte onto the safe alphabet (no bad words)."""
    return "".join(SAFE_ALPHANUMS[b % len(SAFE_ALPHANUMS)] for b in s.encode())


FNV32_OFFSET = 0x811C9DC5


def fnv32a(data: bytes, h: int = FNV32_OFFSET) -> int:
    """FNV-1a, 32 bits; pass the previous result as `h` to keep hashing (hash.Hash32.Write)."""
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def pod_template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The pod-template-hash label of a Deployment's ReplicaSet.

    As controller.ComputeHash: FNV-32a over the template, then the collision count as
    4 little-endian bytes (in an 8-byte buffer), then SafeEncodeString of the decimal
    sum. Kubernetes feeds the hash a spew dump of the Go struct; we feed it canonical
    JSON (sorted keys) of the template, so the hash is stable and shaped the same
    (`67b6dfcd8`), though not bit-identical to a real cluster's.
    """
    h = fnv32a(orjson.dumps(_strip_empty(template), option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = fnv32a(int(collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0", h)
    return safe_encode_string(str(h))


def _strip_empty(v: Any) -> Any:
    """Drop None/empty values so defaulting round-trips ({} vs absent) don't change the hash."""
    if isinstance(v, dict):
        out = {k: _strip_empty(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [_strip_empty(x) for x in v]
    return v


# -- selectors ---------------------------------------------------------------

def match_labels(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """A Service-style selector (map): every pair must match. Empty matches nothing here:
    callers decide (a service with no selector gets no endpoints controller at all)."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def match_label_selector(selector: Any, labels: Mapping[str, str] | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions); an empty one matches everything."""
    if selector is None:
        return False
    labels = labels or {}
    ml = getattr(selector, "matchLabels", None) if not isinstance(selector, dict) else selector.get("matchLabels")
    me = getattr(selector, "matchExpressions", None) if not isinstance(selector, dict) else selector.get("matchExpressions")
    for k, v in (ml or {}).items():
        if labels.get(k) != v:
            return False
    for e in me or ():
        key = e["key"] if isinstance(e, dict) else e.key
        op = e["operator"] if isinstance(e, dict) else e.operator
        values = (e.get("values") if isinstance(e, dict) else e.values) or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# -- pods --------------------------------------------------------------------

def pod_condition(pod: Any, ctype: str) -> Any | None:
    for c in (pod.status.conditions if pod.status else None) or ():
        if c.type == ctype:
            return c
    return None


def is_pod_ready(pod: Any) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.status == "True"


def is_pod_available(pod: Any, min_ready_seconds: int, now: dt.datetime | None = None) -> bool:
    """Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.status != "True":
        return False
    if not min_ready_seconds:
        return True
    t = c.lastTransitionTime
    if t is None:
        return False
    now = now or utcnow()
    return (now - _aware(t)).total_seconds() >= min_ready_seconds


def is_pod_terminating(pod: Any) -> bool:
    return pod.metadata.deletionTimestamp is not None


def pod_phase(pod: Any) -> str:
    return (pod.status.phase if pod.status else None) or "Pending"


def is_pod_active(pod: Any) -> bool:
    """controller.IsPodActive: not terminated, not being deleted."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_pod_terminating(pod)


def controller_of(obj: Any) -> Any | None:
    for ref in obj.metadata.ownerReferences or ():
        if ref.controller:
            return ref
    return None


def owner_reference(owner: Any, api_version: str, kind: str) -> dict:
    """An ownerReference making `owner` the controller (GC deletes the dependent with it)."""
    return {"apiVersion": api_version, "kind": kind, "name": owner.metadata.name,
            "uid": owner.metadata.uid, "controller": True, "blockOwnerDeletion": True}


# -- time --------------------------------------------------------------------

def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(t: Any) -> dt.datetime:
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def rfc3339(t: dt.datetime | None = None) -> str:
    """metav1.Time on the wire: seconds precision, Z."""
    t = (t or utcnow()).astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(t: dt.datetime | None = None) -> str:
    """metav1.MicroTime on the wire (Event.eventTime)."""
    t = (t or utcnow()).astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rv_newer(a: str | None, b: str | None) -> bool:
    """Is resourceVersion a at least as new as b? Revisions are integers in kubesvc and
    in etcd-backed clusters; anything else counts as 'not comparable, trust a'."""
    if not a or not b:
        return bool(a)
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def ns_name(obj: Any) -> tuple[str, str]:
    return (obj.metadata.namespace or "", obj.metadata.name)


def as_dict(obj: Any) -> dict:
    """A lightkube model as plain JSON data (for comparisons and patches)."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()


def chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
