"""Imports every kind's strategy module so that objects.strategy.STRATEGIES is complete.

Import this (the API server does) before serving; a kind without a module gets
the generic strategy.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

_MODULES = (
    "kubesvc.objects.kinds.namespaces",
    "kubesvc.objects.kinds.pods",
    "kubesvc.objects.kinds.nodes",
    "kubesvc.objects.kinds.apps",
    "kubesvc.objects.kinds.endpoints",
    "kubesvc.objects.kinds.events",
    "kubesvc.objects.kinds.configmaps",
    "kubesvc.objects.kinds.leases",
    "kubesvc.objects.service",  # written by the services engineer
)

for _m in _MODULES:
    try:
        importlib.import_module(_m)
    except ModuleNotFoundError as err:
        if err.name and _m.startswith(err.name):
            log.debug("%s not available yet", _m)
        else:
            raise
