"""Events (core/v1): involvedObject must be in the event's namespace; count and
timestamps defaulted so `kubectl describe` prints them."""

from __future__ import annotations

from kubesvc.objects.errors import FieldError, invalid, required
from kubesvc.objects.strategy import STRATEGIES, Strategy


class EventStrategy(Strategy):
    """registry/core/event.eventStrategy."""

    def validate(self, obj: dict) -> list[FieldError]:
        errs = []
        ns = (obj.get("metadata") or {}).get("namespace") or ""
        io = obj.get("involvedObject")
        if not isinstance(io, dict):
            return [required("involvedObject")]
        io_ns = io.get("namespace") or ""
        if io_ns and io_ns != ns:
            errs.append(invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
        return errs


STRATEGIES[("", "Event")] = EventStrategy()
