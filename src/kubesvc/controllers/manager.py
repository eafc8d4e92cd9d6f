"""The controller manager: builds the selected controllers on shared informers, waits
for the caches to sync, then runs their workers until stopped.

`kubesvc controllers` runs it as a process; `kubesvc up` can run the same
`ControllerManager` inside its own event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from lightkube import AsyncClient

from kubesvc.controllers.base import Controller, ControllerContext, SharedInformers
from kubesvc.controllers.events import EventRecorder

log = logging.getLogger(__name__)


def _registry() -> dict[str, type[Controller]]:
    from kubesvc.controllers.deployments import DeploymentController
    from kubesvc.controllers.endpoints import EndpointsController
    from kubesvc.controllers.endpointslices import EndpointSliceController
    from kubesvc.controllers.loadbalancer import LoadBalancerController
    from kubesvc.controllers.nodeipam import NodeIPAMController
    from kubesvc.controllers.nodelifecycle import NodeLifecycleController
    from kubesvc.controllers.replicasets import ReplicaSetController
    from kubesvc.controllers.scheduler import Scheduler
    return {
        "endpoints": EndpointsController,
        "endpointslices": EndpointSliceController,
        "deployments": DeploymentController,
        "replicasets": ReplicaSetController,
        "scheduler": Scheduler,
        "nodeipam": NodeIPAMController,
        "loadbalancer": LoadBalancerController,
        "nodelifecycle": NodeLifecycleController,
    }


# What '*' means, as kube-controller-manager's --controllers: the default-on set.
DEFAULT_CONTROLLERS = ("endpoints", "endpointslices", "deployments", "replicasets", "scheduler",
                       "nodeipam", "loadbalancer")
# Off unless named ('*,nodelifecycle'): it acts on nodes that stop heartbeating, which
# test set-ups that register nodes by hand never do.
ALL_CONTROLLERS = (*DEFAULT_CONTROLLERS, "nodelifecycle")


def resolve_controllers(spec: str) -> list[str]:
    """'*', 'a,b', '*,nodelifecycle', '*,-scheduler' -> the controllers to run (kube's syntax)."""
    names: list[str] = []
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if "*" in parts:
        names.extend(DEFAULT_CONTROLLERS)
    for p in parts:
        if p == "*":
            continue
        if p.startswith("-"):
            if p[1:] not in ALL_CONTROLLERS:
                raise ValueError(f"unknown controllers: {p[1:]}")
            names = [n for n in names if n != p[1:]]
        elif p not in names:
            names.append(p)
    unknown = [n for n in names if n not in ALL_CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)} (known: {', '.join(ALL_CONTROLLERS)})")
    return names


class ControllerManager:
    """Runs a set of controllers against one API server."""

    def __init__(self, client: AsyncClient, controllers: list[str] | None = None, **options: Any):
        registry = _registry()
        names = list(controllers or DEFAULT_CONTROLLERS)
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise ValueError(f"unknown controllers: {', '.join(unknown)} (known: {', '.join(ALL_CONTROLLERS)})")
        self.client = client
        self.informers = SharedInformers(client)
        self.recorder = EventRecorder(client, host=socket.gethostname())
        ctx = ControllerContext(client=client, informers=self.informers, recorder=self.recorder,
                                options=options)
        self.controllers: dict[str, Controller] = {n: registry[n](ctx) for n in names}
        self.synced = asyncio.Event()

    async def start(self, sync_timeout: float | None = None) -> None:
        for c in self.controllers.values():
            c.setup()
        self.recorder.start()
        self.informers.start()
        await self.informers.wait_synced(sync_timeout)
        for c in self.controllers.values():
            await c.start()
            c.run()
        self.synced.set()
        log.info("controllers running: %s", ", ".join(self.controllers))

    async def stop(self) -> None:
        for c in self.controllers.values():
            await c.stop()
        await self.recorder.stop()
        await self.informers.stop()

    def writes(self) -> int:
        return sum(getattr(c, "writes", 0) for c in self.controllers.values())

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
