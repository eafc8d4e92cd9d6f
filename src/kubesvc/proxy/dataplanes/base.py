"""The one duty every data plane has: make the node match a DesiredState."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kubesvc.proxy.model import DesiredState, ServiceEntry, ServicePortName


@dataclass
class SyncResult:
    """What one sync did, for logs and metrics."""

    full: bool
    services_written: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # table -> rules programmed
    compute_seconds: float = 0.0
    apply_seconds: float = 0.0   # the kernel transaction (iptables-restore)
    other_seconds: float = 0.0   # housekeeping (jump rules, hint chain) on full syncs


def changed_services(desired: DesiredState, applied: dict[ServicePortName, ServiceEntry],
                     full: bool) -> set[ServicePortName]:
    """The service ports whose entry differs from what was last applied.

    On an incremental sync the tracker's hint (desired.changed, plus what disappeared) bounds
    the walk; a full one compares every service. Entries are immutable: an unchanged one is
    usually the same object, which saves the deep comparison."""
    new = desired.services
    if desired.changed is not None and not full:
        candidates = desired.changed | (applied.keys() - new.keys())
    else:
        candidates = new.keys() | applied.keys()
    return {spn for spn in candidates if new.get(spn) is not applied.get(spn) and new.get(spn) != applied.get(spn)}


class DataPlane(Protocol):
    """userspace, iptables (and next ipvs, nftables) all implement this."""

    name: str

    async def sync(self, desired: DesiredState, *, full: bool = False) -> SyncResult:
        """Make the node match `desired`; `full` forces a rewrite of everything (drift repair)."""
        ...

    async def close(self) -> None:
        """Stop serving from this process. Kernel rules stay: traffic must not stop with us."""
        ...
