"""A rate-limited, de-duplicating work queue of object keys, as client-go's workqueue.

Contract (the one client-go's controllers rely on):
- a key added several times before a worker takes it is processed once;
- a key is never processed by two workers at once: adding a key that is being
  processed marks it dirty, and it goes back on the queue when ``done`` is called;
- failures are retried with per-key exponential back-off (``add_rate_limited``),
  reset by ``forget`` after a success.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """Raised by ``get`` once the queue is shut down and drained."""


class ExponentialBackoff:
    """Per-key delay base*2^failures, capped (client-go: 5ms .. 1000s; we cap lower)."""

    def __init__(self, base: float = 0.005, cap: float = 60.0):
        self.base, self.cap = base, cap
        self._failures: dict = {}

    def when(self, key) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return min(self.cap, self.base * (2 ** n))

    def forget(self, key) -> None:
        self._failures.pop(key, None)

    def retries(self, key) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """FIFO of keys with de-duplication, in-flight exclusion and delayed/rate-limited adds."""

    def __init__(self, name: str = "", backoff: ExponentialBackoff | None = None):
        self.name = name
        self.backoff = backoff or ExponentialBackoff()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiters: deque[asyncio.Future] = deque()
        self._timers: dict[K, tuple[asyncio.Handle, float]] = {}  # key -> (timer, loop time due)
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # re-queued by done()
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        """Add key after delay seconds; an earlier pending timer for the key wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        due = loop.time() + delay
        if pending is not None:
            if pending[1] <= due:
                return
            pending[0].cancel()
        # The due time is kept beside the handle: uvloop's call_at returns a plain Handle
        # (no .when()) for delays under a millisecond.
        self._timers[key] = (loop.call_at(due, self._fire, key), due)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        self.backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.backoff.retries(key)

    async def get(self) -> K:
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        self._shutting_down = True
        for timer, _due in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
