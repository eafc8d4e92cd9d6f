"""A pod worker's timed wake-ups (back-off restarts, retries) under uvloop, the agent's loop."""

from __future__ import annotations

import asyncio

import uvloop
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from kubesvc.agent.worker import PodWorker


def _worker() -> PodWorker:
    pod = Pod(metadata=ObjectMeta(name="p", namespace="default", uid="u1"),
              spec=PodSpec(containers=[Container(name="c", image="busybox")]))
    return PodWorker(None, pod)


def test_a_wake_due_in_under_a_millisecond_then_another():
    # A back-off that is all but over schedules a wake-up under 1 ms away, for which
    # uvloop returns a plain Handle; the next wake() must still work (it raised
    # AttributeError, which killed the pod's worker: the pod never restarted again).
    async def main() -> bool:
        w = _worker()
        w.wake(0.0001)
        w.wake(0.05)
        await asyncio.wait_for(w._wake.wait(), 2)
        w._wake.clear()
        w.wake(0.05)  # the earlier one fired: a new one is set, not skipped
        await asyncio.wait_for(w._wake.wait(), 2)
        return True

    assert uvloop.run(main())


def test_an_earlier_wake_is_kept_and_a_later_one_replaced():
    async def main() -> float:
        loop = asyncio.get_running_loop()
        w = _worker()
        t0 = loop.time()
        w.wake(0.05)
        w.wake(5)  # later than the pending one: ignored
        await asyncio.wait_for(w._wake.wait(), 2)
        return loop.time() - t0

    assert uvloop.run(main()) < 1
