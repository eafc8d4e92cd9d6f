"""Proxy from the API server to a node's agent (kube-apiserver → kubelet), for pods/log.

The agent is found the way kube-apiserver finds a kubelet: the Node's
status.addresses entry of type InternalIP (falling back to Hostname) and
status.daemonEndpoints.kubeletEndpoint.Port. The agent serves
GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&sinceSeconds=&limitBytes=
with text/plain, the kubelet's own path. On a single machine the agent should
report an address the API server reaches over loopback (e.g. 127.0.0.1 and a
port per node).
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from kubesvc.objects.errors import StatusError, bad_request, not_found
from kubesvc.objects.registry import by_kind

_NODE = by_kind("", "Node")
_PASS = ("follow", "tailLines", "timestamps", "previous", "sinceSeconds", "sinceTime", "limitBytes")


def agent_endpoint(node: dict) -> tuple[str, int] | None:
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addrs.get("InternalIP") or addrs.get("Hostname")
    if not port or not host:
        return None
    return host, int(port)


async def pod_log(h, request: web.Request, rt, ns: str, name: str) -> web.StreamResponse:
    pod = h.registry.get(rt, ns, name)
    spec = pod.get("spec") or {}
    containers = [c.get("name") for c in spec.get("containers") or []]
    container = request.query.get("container")
    if not container:
        if len(containers) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(containers)}]")
        container = containers[0]
    elif container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node_name = spec.get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    node = h.cache.get(_NODE, None, node_name)
    if node is None:
        raise not_found("nodes", node_name)
    ep = agent_endpoint(node)
    if ep is None:
        raise StatusError(404, "NotFound", f'the node agent of node "{node_name}" serves no logs: the node has no '
                          'status.daemonEndpoints.kubeletEndpoint.Port and InternalIP', {"name": node_name,
                                                                                        "kind": "nodes"})
    host, port = ep
    params = {k: request.query[k] for k in _PASS if k in request.query}
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{port}/containerLogs/{ns}/{name}/{container}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, params=params) as upstream:
                if upstream.status != 200:
                    text = (await upstream.text())[:1000]
                    raise StatusError(upstream.status if upstream.status >= 400 else 500, "InternalError",
                                      text or f"node agent answered {upstream.status}")
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                while True:
                    try:
                        chunk = await asyncio.wait_for(upstream.content.readany(), 2.0)
                    except asyncio.TimeoutError:
                        # `logs -f` of a quiet container: stop when our client has gone.
                        if request.transport is None or request.transport.is_closing():
                            break
                        continue
                    if not chunk:
                        break
                    await resp.write(chunk)
                return resp
    except aiohttp.ClientError as err:
        raise StatusError(500, "InternalError", f"Get \"{url}\": {err}")
