"""ConfigMaps: key names as kube-apiserver checks them (IsConfigMapKey)."""

from __future__ import annotations

import re

from kubesvc.objects.errors import FieldError, invalid
from kubesvc.objects.strategy import STRATEGIES, Strategy

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
            "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


def config_key_errors(key: str) -> list[str]:
    errs = []
    if len(key) > 253:
        errs.append("must be no more than 253 characters")
    if not _KEY.match(key):
        errs.append(_KEY_MSG)
    if key in (".", ".."):
        errs.append(f"must not be '{key}'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


class ConfigMapStrategy(Strategy):
    """registry/core/configmap.strategy."""

    def validate(self, obj: dict) -> list[FieldError]:
        errs = []
        seen = set()
        for field in ("data", "binaryData"):
            for k in (obj.get(field) or {}):
                errs.extend(invalid(f"{field}[{k}]", k, m) for m in config_key_errors(k))
                if k in seen:
                    errs.append(invalid(f"{field}[{k}]", k, "duplicate of key present in data"))
                seen.add(k)
        return errs


STRATEGIES[("", "ConfigMap")] = ConfigMapStrategy()
