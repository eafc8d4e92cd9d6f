"""Events about pods and the node, written as kubelet writes them (source component kubelet).

Writes are queued and sent by one background task, so recording an event never
blocks a pod's lifecycle; a failed write is logged and dropped, as client-go's
recorder does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timezone

from lightkube import codecs

log = logging.getLogger(__name__)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Queues core/v1 Events and creates them through the API."""

    def __init__(self, client, node_name: str):
        self.client = client
        self.node_name = node_name
        self._queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=1000)
        self._task: asyncio.Task | None = None

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
        ev = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "type": "Warning" if warning else "Normal",
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        }
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            log.debug("event queue full; dropping %s %s", reason, name)

    async def _run(self) -> None:
        while True:
            ev = await self._queue.get()
            try:
                await self.client.create(codecs.from_dict(ev))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the namespace is going, the server restarts...
                log.debug("event %s not written: %s", ev["reason"], err)
