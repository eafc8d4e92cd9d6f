"""The store on a real etcd v3 cluster (`kubesvc apiserver --store etcd`), through aetcd.

Each Store method is one etcd call, as store/base.py lays out: create is a Txn
on CreateRevision == 0, update and delete are Txns on ModRevision (failing over
to a Range so a refusal says what is there now), range reads at one header
revision, and watch is etcd's own Watch with prev_kv. etcd's revision is the
resourceVersion, exactly as with kube-apiserver on etcd. Like kube-apiserver, the
server compacts etcd's history itself (every minute, keeping the last `history`
revisions); a watch below it gets CompactedError (410 Expired).
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator
from urllib.parse import urlparse

from kubesvc.store.base import (
    CompactedError, Event, KeyExistsError, KeyNotFoundError, KeyValue, RevisionMismatchError, Store,
)

log = logging.getLogger(__name__)

try:
    import aetcd
    from aetcd import rpc
    from aetcd.exceptions import RevisionCompactedError
except ImportError:  # pragma: no cover - optional dependency (pip install 'kubesvc[etcd]')
    aetcd = rpc = RevisionCompactedError = None


def _range_end(prefix: bytes) -> bytes:
    """etcd's range end for a prefix: the prefix with its last byte incremented."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\0"


def _kv(kv) -> KeyValue:
    return KeyValue(kv.key.decode(), bytes(kv.value), kv.create_revision, kv.mod_revision)


class EtcdStore(Store):
    """The Store interface over etcd v3 (the first endpoint is used)."""

    def __init__(self, endpoints: list[str], history: int = 20000, compact_interval: float = 60.0):
        if aetcd is None:
            raise SystemExit("the etcd store needs aetcd: pip install 'kubesvc[etcd]'")
        url = urlparse(endpoints[0] if "//" in endpoints[0] else "http://" + endpoints[0])
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 2379
        self.history = history
        self.compact_interval = compact_interval
        self.client = None
        self._rev = 0
        self._compact_rev = 0
        self._compactor: asyncio.Task | None = None

    async def start(self) -> None:
        self.client = aetcd.Client(host=self.host, port=self.port)
        await self.client.connect()
        resp = await self._range(b"\0", limit=1)
        self._rev = resp.header.revision
        self._compactor = asyncio.create_task(self._compact_loop())

    async def close(self) -> None:
        if self._compactor:
            self._compactor.cancel()
        if self.client is not None:
            await self.client.close()

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        return self._compact_rev

    def _seen(self, rev: int) -> None:
        if rev > self._rev:
            self._rev = rev

    async def _range(self, key: bytes, range_end: bytes | None = None, limit: int = 0):
        req = rpc.RangeRequest(key=key, range_end=range_end or b"", limit=limit,
                               sort_order=rpc.RangeRequest.ASCEND, sort_target=rpc.RangeRequest.KEY)
        return await self.client.kvstub.Range(req, metadata=self.client.metadata)

    async def _txn(self, compare, success, failure):
        resp = await self.client.kvstub.Txn(rpc.TxnRequest(compare=compare, success=success, failure=failure),
                                            metadata=self.client.metadata)
        self._seen(resp.header.revision)
        return resp

    @staticmethod
    def _cmp(key: bytes, target: str, value: int, result: str = "EQUAL"):
        c = rpc.Compare(key=key, result=getattr(rpc.Compare, result), target=getattr(rpc.Compare, target))
        setattr(c, {"CREATE": "create_revision", "MOD": "mod_revision", "VERSION": "version"}[target], value)
        return c

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._range(key.encode())
        self._seen(resp.header.revision)
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        p = prefix.encode()
        resp = await self._range(p, _range_end(p))
        self._seen(resp.header.revision)
        return [_kv(kv) for kv in resp.kvs], resp.header.revision

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = key.encode()
        resp = await self._txn([self._cmp(k, "CREATE", 0)],
                               [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))], [])
        if not resp.succeeded:
            raise KeyExistsError(key)
        rev = resp.header.revision
        return KeyValue(key, value, rev, rev)

    async def _refused(self, key: str, resp) -> Exception:
        kvs = resp.responses[0].response_range.kvs if resp.responses else []
        if not kvs:
            return KeyNotFoundError(key)
        return RevisionMismatchError(key, _kv(kvs[0]))

    async def update(self, key: str, value: bytes, mod_revision: int | None) -> KeyValue:
        k = key.encode()
        cond = (self._cmp(k, "MOD", mod_revision) if mod_revision is not None
                else self._cmp(k, "VERSION", 0, "GREATER"))
        resp = await self._txn([cond], [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, prev_kv=True))],
                               [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))])
        if not resp.succeeded:
            raise await self._refused(key, resp)
        prev = resp.responses[0].response_put.prev_kv
        rev = resp.header.revision
        return KeyValue(key, value, prev.create_revision or rev, rev)

    async def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        k = key.encode()
        cond = (self._cmp(k, "MOD", mod_revision) if mod_revision is not None
                else self._cmp(k, "VERSION", 0, "GREATER"))
        resp = await self._txn([cond], [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k,
                                                                                                 prev_kv=True))],
                               [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))])
        if not resp.succeeded:
            raise await self._refused(key, resp)
        prev = resp.responses[0].response_delete_range.prev_kvs[0]
        return KeyValue(key, bytes(prev.value), prev.create_revision, resp.header.revision)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        p = prefix.encode()
        if start_revision <= self._compact_rev:
            raise CompactedError(start_revision, self._compact_rev)
        stream = await self.client.watch(p, range_end=_range_end(p), start_revision=start_revision, prev_kv=True)
        try:
            async for ev in stream:
                kv, prev = ev.kv, ev.prev_kv
                self._seen(kv.mod_revision)
                key = kv.key.decode()
                # aetcd hands an empty KeyValue (mod_revision 0) for "no previous version".
                prev_kv = (KeyValue(key, bytes(prev.value), prev.create_revision, prev.mod_revision)
                           if prev is not None and prev.mod_revision else None)
                if ev.kind == "DELETE":
                    value = prev_kv.value if prev_kv else b"{}"
                    create = prev_kv.create_revision if prev_kv else 0
                    yield [Event("DELETE", KeyValue(key, value, create, kv.mod_revision), prev_kv)]
                else:
                    yield [Event("PUT", KeyValue(key, bytes(kv.value), kv.create_revision, kv.mod_revision),
                                 prev_kv)]
        except RevisionCompactedError as err:
            self._compact_rev = max(self._compact_rev, err.compacted_revision - 1)
            raise CompactedError(start_revision, err.compacted_revision - 1) from None
        finally:
            try:
                await stream.cancel()
            except Exception:  # the connection may be gone already
                pass

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self.compact_interval)
            target = self._rev - self.history
            if target > self._compact_rev:
                try:
                    await self.client.kvstub.Compact(rpc.CompactionRequest(revision=target),
                                                     metadata=self.client.metadata)
                    self._compact_rev = target
                except Exception as err:  # already compacted further by someone else, or unreachable
                    log.warning("etcd compaction to %d: %s", target, err)
