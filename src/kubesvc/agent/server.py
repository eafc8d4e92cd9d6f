"""The agent's HTTP endpoint (kubelet's port 10250, plain HTTP here).

    GET /containerLogs/{namespace}/{pod}/{container}
        ?follow=true&tailLines=N&previous=true&limitBytes=N&sinceSeconds=N   text/plain
    GET /healthz                                                            ok
    GET /pods                                                               PodList of this node's pods

The API server proxies `kubectl logs` (pods/{name}/log) to /containerLogs, the
path and query kubelet serves. Follow streams until the container run ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from kubesvc.agent.agent import Agent


def _tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def make_app(agent: "Agent") -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(_: web.Request) -> web.Response:
        items = [w.pod.to_dict() for w in agent.workers.values()]
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items},
                                 dumps=lambda o: json.dumps(o, default=str))

    async def container_logs(req: web.Request) -> web.StreamResponse:
        ns, name, container = req.match_info["ns"], req.match_info["pod"], req.match_info["container"]
        q = req.query
        worker = agent.worker_by_name(ns, name)
        if worker is None:
            raise web.HTTPNotFound(text=f'pod "{name}" in namespace "{ns}" is not running on this node')
        if container not in worker.containers:
            raise web.HTTPBadRequest(text=f"container {container} is not valid for pod {name}")
        previous = q.get("previous", "false").lower() == "true"
        path = worker.log_file(container, previous)
        if path is None or not path.exists():
            if previous:
                raise web.HTTPBadRequest(
                    text=f'previous terminated container "{container}" in pod "{name}" not found')
            raise web.HTTPBadRequest(
                text=f'container "{container}" in pod "{name}" is waiting to start: '
                     f'{worker.containers[container].waiting[0]}')
        follow = q.get("follow", "false").lower() == "true" and not previous
        tail = int(q.get("tailLines", "-1"))
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        since = int(q["sinceSeconds"]) if "sinceSeconds" in q else None

        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(req)
        sent = 0
        with open(path, "rb") as f:
            if since is not None and os.stat(path).st_mtime < time.time() - since:
                data = b""  # nothing written in the window (no per-line times are kept)
                f.seek(0, os.SEEK_END)
            else:
                data = _tail(f.read(), tail)
            if limit is not None:
                data = data[:limit]
            await resp.write(data)
            sent += len(data)
            run = worker.containers[container].handle
            while follow and (limit is None or sent < limit):
                chunk = f.read(65536)
                if chunk:
                    if limit is not None:
                        chunk = chunk[:limit - sent]
                    await resp.write(chunk)
                    sent += len(chunk)
                    continue
                if run is None or worker.containers[container].handle is not run:
                    rest = f.read()  # that run ended: send what it wrote last, then stop
                    if limit is not None:
                        rest = rest[:limit - sent]
                    await resp.write(rest)
                    break
                await asyncio.sleep(0.2)
        await resp.write_eof()
        return resp

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/pods", pods)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    return app
