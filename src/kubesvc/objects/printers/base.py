"""What a table printer is, and the cell formatting helpers kube-apiserver's printers share."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

Cells = list[Any]
# (cells, row conditions) for one object; every printer fills the wide cells too,
# as kube-apiserver always prints wide and leaves the choice to kubectl.
RowFunc = Callable[[dict, float], "tuple[Cells, list[dict] | None]"]


@dataclass(frozen=True)
class Column:
    """One meta.k8s.io/v1 TableColumnDefinition.

    description is the text itself, or (OpenAPI definition, field) to take the
    field's description from the schema when first asked (loading the schema is
    not free, and importing the printers should be).
    """

    name: str
    type: str
    description: str | tuple[str, str]
    format: str = ""
    priority: int = 0

    def definition(self) -> dict:
        text = self.description if isinstance(self.description, str) else _doc(*self.description)
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": text, "priority": self.priority}


@dataclass(frozen=True)
class Printer:
    """The columns of a kind and how one object becomes a row."""

    columns: tuple[Column, ...]
    row: RowFunc


# ---------------------------------------------------------------- descriptions

@functools.cache
def _definitions() -> dict:
    try:
        from kubesvc.objects import schema
        return schema.definitions()
    except Exception:  # the schema package missing only costs the help texts
        return {}


def doc(definition: str, field: str) -> tuple[str, str]:
    """A field's description, as Go's SwaggerDoc() gives it (the OpenAPI text is the same), looked up lazily."""
    return (definition, field)


@functools.cache
def _doc(definition: str, field: str) -> str:
    d = _definitions().get(definition, {})
    return (d.get("properties", {}).get(field) or {}).get("description", "")


META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."


def name_column() -> Column:
    return Column("Name", "string", doc(META, "name"), "name")


def age_column() -> Column:
    return Column("Age", "string", doc(META, "creationTimestamp"))


# ---------------------------------------------------------------- time

def parse_time(value: str | None) -> float | None:
    """An RFC3339 (micro)time as a POSIX timestamp; None when unset."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = math.trunc(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def since(value: str | None, now: float | None = None) -> str:
    """translateTimestampSince: the age of a timestamp, "<unknown>" when unset."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((time.time() if now is None else now) - t)


def age(obj: dict, now: float) -> str:
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


# ---------------------------------------------------------------- labels

def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: sorted k=v pairs, "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(selector).String(); "" for nil or empty."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), sorted(set(expr.get("values") or []))
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return "<invalid>"
    reqs.sort(key=lambda r: r[0])  # Go's selector sorts requirements by key (stable)
    return ",".join(r for _, r in reqs)


def format_label_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector: the selector string, "<none>" when it selects nothing."""
    s = selector_string(selector)
    return "<none>" if s == "" else s


def layout_containers(containers: list[dict] | None) -> tuple[str, str]:
    """layoutContainerCells: container names and images, comma separated."""
    containers = containers or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def list_with_more(items: list[str], count: int, max_items: int = 3) -> str:
    """listWithMoreString: "a,b,c + N more...", "<unset>" when empty."""
    text = ",".join(items[:max_items])
    if count > max_items:
        return f"{text} + {count - max_items} more..."
    return text or "<unset>"
