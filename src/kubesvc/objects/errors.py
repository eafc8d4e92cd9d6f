"""Kubernetes API errors: field errors and Status objects, worded as kube-apiserver words them.

Everything that refuses a request raises :class:`StatusError`; the API server
turns it into a meta/v1 Status body with the same code, reason, message and
details kube-apiserver would send, so kubectl prints the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# field.ErrorType -> (cause reason, message prefix)
_FIELD_TYPES = {
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "Required": ("FieldValueRequired", "Required value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
    "Internal": ("InternalError", "Internal error"),
}

_OMIT = object()


def format_value(value: Any) -> str:
    """A value as Go's field errors print it: strings quoted, nil as null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(v) if not isinstance(v, str) else v for v in value) + "]"
    return str(value)


@dataclass
class FieldError:
    """One validation failure at a field path (k8s.io/apimachinery field.Error)."""

    type: str  # a key of _FIELD_TYPES
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        _, prefix = _FIELD_TYPES[self.type]
        if self.type in ("Required", "Forbidden", "TooLong", "TooMany", "Internal") or self.value is _OMIT:
            text = prefix
        elif self.type == "NotSupported":
            text = f"{prefix}: {format_value(self.value)}"
        else:
            text = f"{prefix}: {format_value(self.value)}"
        if self.detail:
            text += ": " + self.detail
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        reason, _ = _FIELD_TYPES[self.type]
        return {"reason": reason, "message": self.body(), "field": self.field}


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, _OMIT, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, _OMIT, detail)


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(format_value(s) for s in supported) if supported else ""
    return FieldError("NotSupported", field, value, detail)


def too_long(field: str, value: Any, max_length: int) -> FieldError:
    return FieldError("TooLong", field, value, f"may not be more than {max_length} bytes")


class StatusError(Exception):
    """An API error that becomes a meta/v1 Status response."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       _details(name, group, resource))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                       _details(name, group, resource))


def conflict(resource: str, name: str, group: str = "",
             detail: str = "the object has been modified; please apply your changes to the latest version and try again") -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
                       _details(name, group, resource))


def invalid_object(kind: str, name: str, errors: list[FieldError], group: str = "") -> StatusError:
    """422 Invalid for a list of field errors (the Kind is the object's kind, e.g. "Service")."""
    if len(errors) == 1:
        text = str(errors[0])
    else:
        text = "[" + ", ".join(str(e) for e in errors) + "]"
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def method_not_allowed() -> StatusError:
    return StatusError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource")


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def forbidden_error(resource: str, name: str, message: str, group: str = "") -> StatusError:
    return StatusError(403, "Forbidden",
                       f'{_qualified(resource, group)} "{name}" is forbidden: {message}',
                       _details(name, group, resource))


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")
