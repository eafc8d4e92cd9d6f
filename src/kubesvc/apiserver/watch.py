"""Watch requests: kube-apiserver's watch semantics on top of the watch cache.

Owns resourceVersion handling for watches (unset/0: synthetic ADDED events for
what exists; N: every change after N from the cache's window; too old: one ERROR
event with 410 Expired), sendInitialEvents with its annotated bookmark, periodic
BOOKMARKs, timeoutSeconds, Table rendering per event, and writing events as
chunked JSON lines, batching what is queued into one write.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from kubesvc.apiserver.rest import _parse_rv, invalid
from kubesvc.objects.errors import bad_request, expired, forbidden
from kubesvc.objects.registry import ResourceType
from kubesvc.objects.tables import to_table

if TYPE_CHECKING:
    from kubesvc.apiserver.handlers import Handlers

BOOKMARK_INTERVAL = 10.0
IDLE_CHECK = 2.0  # how often an idle watch checks that its client is still there
DEFAULT_WATCH_TIMEOUT = 1800


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def _table_version(request: web.Request) -> str | None:
    from kubesvc.apiserver.codec import wants
    mt = wants(request, "Table", "meta.k8s.io")
    return mt.params.get("v", "v1") if mt else None


async def serve_watch(h: "Handlers", request: web.Request, rt: ResourceType, ns: str | None,
                      name: str | None = None) -> web.StreamResponse:
    """One watch request: initial or replayed events, then live ones, as chunked JSON lines."""
    q = request.query
    ls, fs, matches = h.selectors(request, rt)
    if name is not None:
        base = matches

        def matches(o, base=base):  # noqa: E306
            return o["metadata"]["name"] == name and (base is None or base(o))
    match = matches or (lambda o: True)
    rv = q.get("resourceVersion", "")
    bookmarks = _bool(q.get("allowWatchBookmarks"))
    send_initial = q.get("sendInitialEvents")
    if send_initial is not None and _bool(send_initial) and q.get("resourceVersionMatch") != "NotOlderThan":
        raise invalid(rt, "", [forbidden(
            "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
    try:
        timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
    except ValueError:
        raise bad_request(f"invalid timeoutSeconds: {q.get('timeoutSeconds')}")
    table = _table_version(request)
    initial: list = []
    error: dict | None = None
    listed_rev = 0
    initial_bookmark = False
    if rv in ("", "0") or _bool(send_initial):
        if rv not in ("", "0"):
            want = _parse_rv(rv)
            await h.cache.wait_for(want, 3.0)
        # List and subscribe with no await in between: nothing can fall in the gap.
        objs = h.filtered(rt, ns, fs, matches) if name is None else \
            [o for o in h.cache.list(rt, ns) if match(o)]
        initial = [("ADDED", o, None) for o in objs]
        w, _ = h.cache.watch(rt, ns, match, None)
        listed_rev = h.cache.rev
        initial_bookmark = _bool(send_initial)
    else:
        since = _parse_rv(rv)
        if since < h.cache.oldest:
            error = expired(f"too old resource version: {since} ({h.cache.oldest})").status()
            w = None
        else:
            if since > h.cache.rev:
                await h.cache.wait_for(since, 3.0)
            w, replay = h.cache.watch(rt, ns, match, since)
            initial = replay
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    first = [True]

    def encode(typ: str, obj: dict) -> bytes:
        if table and typ in ("ADDED", "MODIFIED", "DELETED"):
            t = to_table(rt, [obj], include_object=q.get("includeObject", "Metadata"),
                         include_headers=first[0])
            t["apiVersion"] = f"meta.k8s.io/{table}"
            first[0] = False
            obj = t
        return orjson.dumps({"type": typ, "object": obj}) + b"\n"

    def bookmark(end_of_initial: bool = False) -> bytes:
        # The end of the initial events is at the revision they were listed at; events
        # after it may still be queued. Other bookmarks are sent only with an empty
        # queue, when everything up to the cache's revision has been written.
        md: dict[str, Any] = {"resourceVersion": str(listed_rev if end_of_initial else h.cache.rev)}
        if end_of_initial:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return orjson.dumps({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version,
                                                            "metadata": md}}) + b"\n"

    try:
        if error is not None:
            await resp.write(orjson.dumps({"type": "ERROR", "object": error}) + b"\n")
            return resp
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        buf = [encode(t, o) for t, o, *_ in initial]
        if initial_bookmark:
            buf.append(bookmark(True))
        if buf:
            await resp.write(b"".join(buf))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if bookmarks and w.queue.empty():
                    # As kube-apiserver does: a last bookmark before the watch times out,
                    # so the client resumes from here without a relist.
                    await resp.write(bookmark())
                break
            try:
                item = await asyncio.wait_for(w.queue.get(), min(left, IDLE_CHECK))
            except asyncio.TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the client went away (aiohttp does not cancel handlers for that)
                now = time.monotonic()
                if bookmarks and w.queue.empty() and now < deadline and now >= next_bookmark:
                    await resp.write(bookmark())
                    next_bookmark = now + BOOKMARK_INTERVAL
                continue
            if item is None:
                break
            chunks = [encode(item[0], item[1])]
            # Drain what is queued into one write: fewer syscalls under load.
            while not w.queue.empty() and len(chunks) < 1000:
                item = w.queue.get_nowait()
                if item is None:
                    break
                chunks.append(encode(item[0], item[1]))
            await resp.write(b"".join(chunks))
            if item is None:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if w is not None:
            h.cache.unwatch(w)
    return resp
