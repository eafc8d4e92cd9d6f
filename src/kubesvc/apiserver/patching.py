"""PATCH bodies as the handlers see them: the patch types and one import point for
objects.patch (strategic merge, JSON merge, JSON patch, server-side apply) and the
field manager. The merge logic itself lives in kubesvc.objects."""

from __future__ import annotations

from kubesvc.objects.patch import (  # noqa: F401  (re-exported for the handlers)
    apply_patch, merge_patch, server_side_apply, strict_patch_error, update_managed_fields,
)
from kubesvc.objects.patch import parse_apply_body as parse_apply  # noqa: F401

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

__all__ = ["APPLY", "JSON_PATCH", "MERGE", "STRATEGIC", "apply_patch", "merge_patch", "parse_apply",
           "server_side_apply", "strict_patch_error", "update_managed_fields"]
