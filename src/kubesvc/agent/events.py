"""Events about pods and the node, written as kubelet writes them (source component kubelet).

Writes are queued and sent by one background task, so recording an event never
blocks a pod's lifecycle; repeats of an event within ten minutes update its count; a failed write is logged and dropped, as client-go's
recorder does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import datetime, timezone

from lightkube import codecs
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

log = logging.getLogger(__name__)

AGGREGATE_WINDOW = 600.0  # seconds: repeats within it update one Event


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Queues core/v1 Events and creates them through the API."""

    def __init__(self, client, node_name: str):
        self.client = client
        self.node_name = node_name
        self._queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=1000)
        self._task: asyncio.Task | None = None
        self._seen: dict[tuple, list] = {}  # (uid, fieldPath, reason, message) -> [name, count, last]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="events")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def pod(self, pod, reason: str, message: str, *, warning: bool = False,
            container: str | None = None) -> None:
        md = pod.metadata
        involved = {"kind": "Pod", "apiVersion": "v1", "namespace": md.namespace, "name": md.name,
                    "uid": md.uid}
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        self._emit(md.namespace, md.name, involved, reason, message, warning)

    def node(self, uid: str | None, reason: str, message: str, warning: bool = False) -> None:
        involved = {"kind": "Node", "name": self.node_name, "uid": uid or self.node_name}
        self._emit("default", self.node_name, involved, reason, message, warning)

    def _emit(self, namespace: str, name: str, involved: dict, reason: str, message: str,
              warning: bool) -> None:
        ts = now_rfc3339()
        # Repeats of one event (a probe failing every period) bump its count, as
        # client-go's correlator does, instead of writing a new object each time.
        key = (involved.get("uid"), involved.get("fieldPath"), reason, message)
        seen = self._seen.get(key)
        now = time.monotonic()
        if seen is not None and now - seen[2] < AGGREGATE_WINDOW:
            seen[1] += 1
            seen[2] = now
            self._put({"_patch": True, "metadata": {"name": seen[0], "namespace": namespace},
                       "count": seen[1], "lastTimestamp": ts})
            return
        ev = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "type": "Warning" if warning else "Normal",
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        }
        self._seen[key] = [ev["metadata"]["name"], 1, now]
        if len(self._seen) > 4096:
            self._seen.pop(next(iter(self._seen)))
        self._put(ev)

    def _put(self, ev: dict) -> None:
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            log.debug("event queue full; dropping %s", ev.get("reason", "an update"))

    async def _run(self) -> None:
        while True:
            ev = await self._queue.get()
            try:
                if ev.pop("_patch", False):
                    md = ev.pop("metadata")
                    await self.client.patch(Event, md["name"], ev, namespace=md["namespace"],
                                            patch_type=PatchType.MERGE)
                else:
                    await self.client.create(codecs.from_dict(ev))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the namespace is going, the server restarts...
                log.debug("event %s not written: %s", ev.get("reason", "update"), err)
