"""Pod status: the phase and conditions kubelet derives, and the writer that sends them.

`pod_phase` is kubelet's getPhase; `PodConditions` keeps lastTransitionTime true
across updates; `StatusManager` patches status (JSON merge patch on /status, so
no resourceVersion conflicts) only when something changed, one pod at a time,
coalescing bursts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from kubesvc.agent.events import now_rfc3339

log = logging.getLogger(__name__)


def pod_phase(restart_policy: str, statuses: list[dict]) -> str:
    """kubelet's getPhase over containerStatuses dicts (state/lastState as the API has them)."""
    waiting = running = stopped = succeeded = 0
    for st in statuses:
        state = st.get("state") or {}
        last = st.get("lastState") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
                if last["terminated"].get("exitCode") == 0:
                    succeeded += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if restart_policy == "Always":
            return "Running"  # all containers are restarting
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: the failed ones restart
    return "Pending"


class PodConditions:
    """The four pod conditions kubelet owns, with stable lastTransitionTime."""

    def __init__(self, existing: list | None = None):
        self._since: dict[str, tuple[str, str]] = {}
        for c in existing or []:
            self._since[c.type] = (c.status, _ts(c.lastTransitionTime))

    def _cond(self, type_: str, ok: bool, reason: str = "", message: str = "") -> dict:
        status = "True" if ok else "False"
        prev = self._since.get(type_)
        if prev is None or prev[0] != status:
            prev = (status, now_rfc3339())
            self._since[type_] = prev
        c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": prev[1]}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        return c

    def compute(self, statuses: list[dict], phase: str, sandbox_ready: bool,
                pending_init: list[str] | None = None) -> list[dict]:
        unready = [s["name"] for s in statuses if not s.get("ready")]
        terminal = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
        ready = not unready and not terminal
        if pending_init:
            init = self._cond("Initialized", False, "ContainersNotInitialized",
                              f"containers with incomplete status: [{' '.join(pending_init)}]")
        else:
            init = self._cond("Initialized", True, "PodCompleted" if terminal else "")
        return [
            self._cond("PodReadyToStartContainers", sandbox_ready),
            init,
            self._cond("Ready", ready, "" if ready else reason, "" if ready else message),
            self._cond("ContainersReady", ready, "" if ready else reason, "" if ready else message),
            self._cond("PodScheduled", True),
        ]


def _ts(value: Any) -> str:
    if value is None:
        return now_rfc3339()
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusManager:
    """Sends each pod's latest status, skipping unchanged ones."""

    def __init__(self, client):
        self.client = client
        self._sent: dict[str, dict] = {}
        self._pending: dict[str, tuple[str, str, dict]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pod-status")

    def set(self, uid: str, namespace: str, name: str, status: dict) -> None:
        if self._sent.get(uid) == status:
            self._pending.pop(uid, None)
            return
        self._pending[uid] = (namespace, name, status)
        self._wake.set()

    def forget(self, uid: str) -> None:
        self._sent.pop(uid, None)
        self._pending.pop(uid, None)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                uid, (ns, name, status) = next(iter(self._pending.items()))
                del self._pending[uid]
                try:
                    await self.client.patch(Pod.Status, name, {"status": status}, namespace=ns,
                                            patch_type=PatchType.MERGE)
                    self._sent[uid] = status
                except asyncio.CancelledError:
                    raise
                except ApiError as err:
                    if err.status.code != 404:
                        log.warning("status of %s/%s: %s", ns, name, err)
                        self._pending.setdefault(uid, (ns, name, status))
                        await asyncio.sleep(1)
                except Exception as err:
                    log.warning("status of %s/%s: %s: %s", ns, name, type(err).__name__, err)
                    self._pending.setdefault(uid, (ns, name, status))
                    await asyncio.sleep(1)
