"""A small process supervisor: start components in order, restart the ones that crash.

`kubesvc up` runs every component as a child process (the same `kubesvc <comp>`
commands a multi-machine install runs), so a crash in one is contained, reported
and followed by a restart with back-off, and Ctrl-C stops them all, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the supervisor dies, even by SIGKILL, so no component outlives it
    (the agent then stops its pods as on Ctrl-C)."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Component:
    """One supervised child process."""

    name: str
    argv: list[str]
    log_path: Path
    # Resolves once the component is ready to serve (e.g. an HTTP health check).
    ready: Callable[[], Awaitable[bool]] | None = None
    stop_timeout: float = 10.0
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    last_exit: int | None = None
    backoff: float = field(default=1.0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """Starts components in order and keeps them running until stop()."""

    MAX_BACKOFF = 30.0

    def __init__(self, on_event: Callable[[str, Component, str], None] | None = None):
        self.components: list[Component] = []
        self._watchers: list[asyncio.Task] = []
        self._stopping = False
        self._on_event = on_event or (lambda kind, comp, msg: log.info("%s: %s", comp.name, msg))

    async def start(self, comp: Component, ready_timeout: float = 600.0, slow_after: float = 60.0) -> None:
        """Start comp and wait until it is ready (or raise if it dies or times out).

        A slow machine (or a VM without acceleration) can take minutes: past slow_after
        it is reported once as slow, and given up on only after ready_timeout.
        """
        self.components.append(comp)
        await self._spawn(comp)
        if comp.ready is not None:
            t0 = time.monotonic()
            deadline, slow = t0 + ready_timeout, t0 + slow_after
            while True:
                if slow and time.monotonic() > slow:
                    slow = 0.0
                    self._on_event("slow", comp, f"not ready after {slow_after:.0f}s; still waiting")
                if not comp.running:
                    raise RuntimeError(f"{comp.name} exited with {comp.proc.returncode}; see {comp.log_path}")
                try:
                    if await comp.ready():
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{comp.name} not ready after {ready_timeout:.0f}s; see {comp.log_path}")
                await asyncio.sleep(0.1)
        self._watchers.append(asyncio.create_task(self._watch(comp)))
        self._on_event("started", comp, f"running (pid {comp.proc.pid})")

    async def _spawn(self, comp: Component) -> None:
        comp.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(comp.log_path, "ab", buffering=0)
        try:
            comp.proc = await asyncio.create_subprocess_exec(
                *comp.argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            out.close()
        comp.started_at = time.monotonic()

    async def _watch(self, comp: Component) -> None:
        while not self._stopping:
            code = await comp.proc.wait()
            if self._stopping:
                return
            comp.last_exit = code
            # A component that ran for a while before crashing starts again quickly.
            if time.monotonic() - comp.started_at > 60:
                comp.backoff = 1.0
            self._on_event("crashed", comp, f"exited with {code}; restarting in {comp.backoff:.0f}s")
            await asyncio.sleep(comp.backoff)
            comp.backoff = min(comp.backoff * 2, self.MAX_BACKOFF)
            if self._stopping:
                return
            comp.restarts += 1
            await self._spawn(comp)
            self._on_event("restarted", comp, f"restarted (restart {comp.restarts}, pid {comp.proc.pid})")

    async def stop(self) -> None:
        """Stop every component, last started first: SIGTERM, then SIGKILL after its timeout."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for comp in reversed(self.components):
            if not comp.running:
                continue
            try:
                os.killpg(comp.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                await asyncio.wait_for(comp.proc.wait(), comp.stop_timeout)
            except asyncio.TimeoutError:
                self._on_event("killed", comp, f"did not stop in {comp.stop_timeout:.0f}s; killing")
                try:
                    os.killpg(comp.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await comp.proc.wait()
