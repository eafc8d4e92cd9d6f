"""Event recorder: core/v1 Events as client-go's recorder writes them, aggregated.

An event names the object it is about (involvedObject), why (reason, a CamelCase
word), what (message), who (source.component) and when (firstTimestamp,
lastTimestamp). Like client-go's EventCorrelator:
- an identical event (same object, type, reason, message, source) seen again is not
  written anew: the existing Event's count and lastTimestamp are patched;
- more than 10 distinct messages for the same object/type/reason within 10 minutes
  collapse into one "(combined from similar events): ..." event;
- a spam filter allows each source+object a burst of 25 events, then one per 5
  minutes (EventSourceObjectSpamFilter): scaling a ReplicaSet to 500 pods writes 25
  events about it, not 500.
Writes happen on a background task so a controller's sync never waits on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from kubesvc.controllers.util import rfc3339, utcnow

log = logging.getLogger(__name__)

MAX_SIMILAR = 10
SIMILAR_WINDOW = 600.0
CACHE_SIZE = 4096
SPAM_BURST = 25
SPAM_REFILL = 1 / 300  # tokens a second


def object_reference(obj: Any, api_version: str | None = None, kind: str | None = None) -> dict:
    md = obj.metadata
    ref = {"kind": kind or obj.kind, "apiVersion": api_version or obj.apiVersion, "name": md.name,
           "uid": md.uid, "resourceVersion": md.resourceVersion}
    if md.namespace:
        ref["namespace"] = md.namespace
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Records events for one process; ``recorder.for_component(name)`` gives each
    controller its source.component."""

    def __init__(self, client: Any, host: str | None = None):
        self.client = client
        self.host = host
        self._pending: asyncio.Queue = asyncio.Queue(maxsize=10000)
        self._seen: OrderedDict[tuple, dict] = OrderedDict()  # identical-event key -> state
        self._similar: dict[tuple, tuple[float, set[str]]] = {}
        self._spam: OrderedDict[tuple, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self.written = 0

    def for_component(self, component: str) -> "ComponentRecorder":
        return ComponentRecorder(self, component)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._writer(), name="event-recorder")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def flush(self) -> None:
        """Wait until queued events are written (tests, shutdown)."""
        while not self._pending.empty():
            await asyncio.sleep(0.01)

    def _allow(self, component: str, ref: dict, now: float) -> bool:
        key = (component, self.host, ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"),
               ref.get("apiVersion"))
        tokens, at = self._spam.get(key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - at) * SPAM_REFILL)
        ok = tokens >= 1.0
        self._spam[key] = (tokens - 1.0 if ok else tokens, now)
        self._spam.move_to_end(key)
        while len(self._spam) > CACHE_SIZE:
            self._spam.popitem(last=False)
        return ok

    def record(self, component: str, ref: dict, etype: str, reason: str, message: str) -> None:
        aggregate = (component, ref.get("uid") or ref["name"], ref["kind"], etype, reason)
        now = time.monotonic()
        if not self._allow(component, ref, now):
            self.dropped += 1
            return
        start, messages = self._similar.get(aggregate, (now, set()))
        if now - start > SIMILAR_WINDOW:
            start, messages = now, set()
        messages.add(message)
        self._similar[aggregate] = (start, messages)
        if len(self._similar) > CACHE_SIZE:  # forget windows that are over
            for k in [k for k, (t, _) in self._similar.items() if now - t > SIMILAR_WINDOW]:
                del self._similar[k]
            while len(self._similar) > CACHE_SIZE:
                del self._similar[next(iter(self._similar))]
        if len(messages) > MAX_SIMILAR:
            message = "(combined from similar events): " + message
            key = aggregate + ("",)
        else:
            key = aggregate + (message,)
        try:
            self._pending.put_nowait((key, component, ref, etype, reason, message))
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s %s", reason, message)

    async def _writer(self) -> None:
        while True:
            item = await self._pending.get()
            try:
                await self._write(*item)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # events are best effort, as in client-go
                log.warning("writing event %s failed: %s", item[4], err)

    async def _write(self, key: tuple, component: str, ref: dict, etype: str, reason: str,
                     message: str) -> None:
        now = rfc3339(utcnow())
        namespace = ref.get("namespace") or "default"
        state = self._seen.get(key)
        if state is not None:
            state["count"] += 1
            self._seen.move_to_end(key)
            try:
                await self.client.patch(Event, state["name"], {
                    "count": state["count"], "lastTimestamp": now, "message": message,
                }, namespace=namespace, patch_type=PatchType.MERGE)
                self.written += 1
                return
            except Exception:  # gone (TTL, deleted): write a new one
                pass
        name = f"{ref['name']}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref, "reason": reason, "message": message, "type": etype,
            "source": {"component": component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": self.host or "",
        }
        await self.client.create(Event.from_dict(body), namespace=namespace)
        self.written += 1
        self._seen[key] = {"name": name, "count": 1}
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)


class ComponentRecorder:
    """A recorder bound to a source component (e.g. 'deployment-controller')."""

    def __init__(self, parent: EventRecorder, component: str):
        self.parent, self.component = parent, component

    def event(self, obj: Any, etype: str, reason: str, message: str, *,
              api_version: str | None = None, kind: str | None = None) -> None:
        ref = obj if isinstance(obj, dict) else object_reference(obj, api_version, kind)
        self.parent.record(self.component, ref, etype, reason, message)

    def normal(self, obj: Any, reason: str, message: str, **kw: Any) -> None:
        self.event(obj, "Normal", reason, message, **kw)

    def warning(self, obj: Any, reason: str, message: str, **kw: Any) -> None:
        self.event(obj, "Warning", reason, message, **kw)
