"""Leases (coordination.k8s.io/v1): node heartbeats and leader election; only
sanity checks on the durations."""

from __future__ import annotations

from kubesvc.objects.errors import FieldError, invalid
from kubesvc.objects.strategy import STRATEGIES, Strategy


class LeaseStrategy(Strategy):
    """registry/coordination/lease.leaseStrategy."""

    def validate(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        d = spec.get("leaseDurationSeconds")
        if d is not None and (not isinstance(d, int) or d <= 0):
            return [invalid("spec.leaseDurationSeconds", d, "must be greater than 0")]
        return []


STRATEGIES[("coordination.k8s.io", "Lease")] = LeaseStrategy()
