"""Per-kind table printers: kube-apiserver's column definitions and cell formats.

Each module holds the printers of a few related kinds (the facts come from
kubernetes ``pkg/printers/internalversion/printers.go``); :data:`PRINTERS` maps
(group, kind) to its :class:`~kubesvc.objects.printers.base.Printer`. The Table
itself is assembled by :mod:`kubesvc.objects.tables`.
"""

from __future__ import annotations

from kubesvc.objects.printers import apps, cluster, network, pods
from kubesvc.objects.printers.base import Column, Printer

PRINTERS: dict[tuple[str, str], Printer] = {
    **pods.PRINTERS, **network.PRINTERS, **apps.PRINTERS, **cluster.PRINTERS,
}

__all__ = ["Column", "Printer", "PRINTERS"]
