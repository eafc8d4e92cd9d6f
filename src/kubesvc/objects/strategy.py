"""Per-kind behaviour the generic REST handlers call (kube-apiserver's "strategy").

The API server stores every kind the same way; what differs per kind lives in a
:class:`Strategy`: defaults, validation, what a status or main-resource update may
change, and admission that reserves shared resources (ClusterIPs, NodePorts)
together with the write. Kinds register theirs in :data:`STRATEGIES`; a kind with
none gets the generic one.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from kubesvc.objects.errors import FieldError

# Called once the store write is done: finish(True) keeps what admission reserved,
# finish(False) gives it back (the write failed or was refused).
Finish = Callable[[bool], Awaitable[None] | None]


class Strategy:
    """Generic strategy: no defaults, no kind-specific validation."""

    def prepare_for_create(self, obj: dict) -> None:
        """Reset what a create may not set (e.g. status), in place."""

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        """Carry over what a main-resource update may not change (e.g. status), in place."""

    def prepare_for_status_update(self, obj: dict, old: dict) -> None:
        """Carry over everything but status for a /status update, in place."""

    def default(self, obj: dict) -> None:
        """Fill defaults in place, as kube-apiserver's decoder defaults them (SetDefaults_*).
        The field manager sees the object after these: the writer owns what they fill."""

    def default_for_storage(self, obj: dict) -> None:
        """Fill what kube-apiserver's REST storage sets after the field manager (BeginCreate,
        PrepareForCreate: a Service's ipFamilies/ipFamilyPolicy, clusterIPs), in place;
        fields set here belong to no manager."""

    def validate(self, obj: dict) -> list[FieldError]:
        """Validation of a new object (metadata is validated generically)."""
        return []

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        """Validation of an update: immutable fields and transitions, then validate()."""
        return self.validate(obj)


class Admission(Protocol):
    """Reserves shared resources with a write; raises StatusError to refuse it."""

    async def admit(self, operation: str, obj: dict | None, old: dict | None) -> Finish:
        """operation is CREATE, UPDATE or DELETE; may change obj in place (e.g. allocate)."""
        ...


# (group, kind) -> Strategy; filled by the modules that define kinds' behaviour.
STRATEGIES: dict[tuple[str, str], Strategy] = {}

GENERIC = Strategy()


def strategy_for(group: str, kind: str) -> Strategy:
    return STRATEGIES.get((group, kind), GENERIC)
