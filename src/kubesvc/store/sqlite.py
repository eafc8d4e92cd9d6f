"""The embedded store: SQLite in WAL mode behind the etcd-shaped interface.

Owns durability and the revision counter. One writer thread applies writes in
batches (group commit: every write that queued while the previous transaction
was syncing goes into the next one), each write getting its own revision; a
write's future resolves only after its transaction committed with
``synchronous=FULL``, so anything acknowledged survives kill -9 and power loss.

History: every change is also appended to the ``log`` table, which is what a
watch from an old revision replays (across restarts too). The log is trimmed to
the last ``history`` revisions; a watch from below that gets CompactedError,
which the API server answers with 410 Expired, as etcd compaction does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator

from kubesvc.store.base import (
    CompactedError, Event, KeyExistsError, KeyNotFoundError, KeyValue, RevisionMismatchError, Store,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_value BLOB,
    prev_mod_rev INTEGER
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with prefix (etcd's range_end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


@dataclass
class _Op:
    kind: str  # create | update | delete
    key: str
    value: bytes | None
    mod_revision: int | None
    future: asyncio.Future
    result: object = None


@dataclass
class _Watcher:
    prefix: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class SQLiteStore(Store):
    """A durable revisioned key-value store in one SQLite file."""

    def __init__(self, path: str, history: int = 50000):
        self.path = path
        self.history = history
        self._rev = 0
        self._compact_rev = 0
        self._ops: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        self._pending: list[_Op] = []
        self._flush_scheduled = False
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: list[_Watcher] = []
        # Recent events in memory so that most watch starts need no SQL.
        self._recent: deque[Event] = deque(maxlen=min(history, 20000))
        self._reader: sqlite3.Connection | None = None

    # -- lifecycle -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit; a write acknowledged is on disk.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = self._connect()
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()
        self._compact_rev = row[0] if row else 0
        revs = [conn.execute("SELECT MAX(rev) FROM log").fetchone()[0] or 0,
                conn.execute("SELECT MAX(mod_rev) FROM kv").fetchone()[0] or 0,
                self._compact_rev]
        row = conn.execute("SELECT value FROM meta WHERE name='rev'").fetchone()
        revs.append(row[0] if row else 0)
        self._rev = max(revs)
        self._reader = self._connect()
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="sqlite-writer",
                                        daemon=True)
        self._writer.start()

    async def close(self) -> None:
        if self._writer:
            self._ops.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        if self._reader:
            self._reader.close()
            self._reader = None
        for w in self._watchers:
            w.queue.put_nowait(None)

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        return self._compact_rev

    # -- reads (WAL readers never block the writer) --------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        row = self._reader.execute("SELECT key, value, create_rev, mod_rev FROM kv WHERE key=?",
                                   (key,)).fetchone()
        return KeyValue(*row) if row else None

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        cur = self._reader.cursor()
        cur.execute("BEGIN")
        try:
            rows = cur.execute("SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ?"
                               " ORDER BY key", (prefix, _prefix_end(prefix))).fetchall()
            # Written in the same transaction as the data: exactly the revision of this snapshot.
            row = cur.execute("SELECT value FROM meta WHERE name='rev'").fetchone()
            rev = row[0] if row else 0
        finally:
            cur.execute("COMMIT")
        return [KeyValue(*r) for r in rows], max(rev, max((r[3] for r in rows), default=0))

    # -- writes ------------------------------------------------------------------------

    async def _submit(self, kind: str, key: str, value: bytes | None, mod_revision: int | None):
        fut = self._loop.create_future()
        self._pending.append(_Op(kind, key, value, mod_revision, fut))
        if not self._flush_scheduled:
            # One hand-off to the writer thread per loop iteration, however many writes
            # this iteration produced (a thread wake-up per write costs more than the write).
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            self._ops.put(batch)

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit("create", key, value, None)

    async def update(self, key: str, value: bytes, mod_revision: int | None) -> KeyValue:
        return await self._submit("update", key, value, mod_revision)

    async def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        return await self._submit("delete", key, None, mod_revision)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._ops.get()
            if first is None:
                conn.close()
                return
            batch = list(first)
            stop = False
            # Group commit: everything queued while the last transaction synced goes in this one.
            while len(batch) < 512:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.extend(nxt)
            try:
                events = self._apply(conn, batch)
            except Exception as err:  # disk full, I/O error: fail the whole batch
                log.exception("store write failed")
                conn.execute("ROLLBACK") if conn.in_transaction else None
                for o in batch:
                    o.result = err
                events = []
            self._loop.call_soon_threadsafe(self._deliver, batch, events)
            if stop:
                conn.close()
                return

    def _apply(self, conn: sqlite3.Connection, batch: list[_Op]) -> list[Event]:
        rev = self._rev
        events: list[Event] = []
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            row = conn.execute("SELECT key, value, create_rev, mod_rev FROM kv WHERE key=?", (op.key,)).fetchone()
            cur = KeyValue(*row) if row else None
            if op.kind == "create":
                if cur is not None:
                    op.result = KeyExistsError(op.key)
                    continue
            else:
                if cur is None:
                    op.result = KeyNotFoundError(op.key)
                    continue
                if op.mod_revision is not None and op.mod_revision != cur.mod_revision:
                    op.result = RevisionMismatchError(op.key, cur)
                    continue
            rev += 1
            if op.kind == "delete":
                conn.execute("DELETE FROM kv WHERE key=?", (op.key,))
                kv = KeyValue(op.key, cur.value, cur.create_revision, rev)
                conn.execute("INSERT INTO log VALUES (?,?,?,?,?,?,?)",
                             (rev, "DELETE", op.key, cur.value, cur.create_revision, cur.value, cur.mod_revision))
                ev = Event("DELETE", kv, cur)
            else:
                create_rev = cur.create_revision if cur else rev
                kv = KeyValue(op.key, op.value, create_rev, rev)
                conn.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?,?)", (op.key, op.value, create_rev, rev))
                conn.execute("INSERT INTO log VALUES (?,?,?,?,?,?,?)",
                             (rev, "PUT", op.key, op.value, create_rev,
                              cur.value if cur else None, cur.mod_revision if cur else None))
                ev = Event("PUT", kv, cur)
            op.result = kv
            events.append(ev)
        compact = rev - self.history
        if compact > self._compact_rev + max(1, self.history // 10):
            conn.execute("DELETE FROM log WHERE rev <= ?", (compact,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('compact_rev', ?)", (compact,))
        else:
            compact = None
        # The revision survives even if the log is empty (e.g. everything compacted).
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('rev', ?)", (rev,))
        conn.execute("COMMIT")
        self._rev = rev
        if compact is not None:
            self._compact_rev = compact
        return events

    def _deliver(self, batch: list[_Op], events: list[Event]) -> None:
        # Watchers first: by the time a writer resumes, its event is queued everywhere.
        if events:
            self._recent.extend(events)
            for w in self._watchers:
                mine = [e for e in events if e.kv.key.startswith(w.prefix)]
                if mine:
                    w.queue.put_nowait(mine)
        for op in batch:
            if op.future.done():
                continue
            if isinstance(op.result, BaseException):
                op.future.set_exception(op.result)
            else:
                op.future.set_result(op.result)

    # -- watch -------------------------------------------------------------------------

    def _history(self, prefix: str, start: int) -> list[Event]:
        if self._recent and self._recent[0].kv.mod_revision <= start:
            return [e for e in self._recent if e.kv.mod_revision >= start and e.kv.key.startswith(prefix)]
        if self._recent and start > self._recent[-1].kv.mod_revision:
            return []
        out = []
        for rev, typ, key, value, create_rev, prev_value, prev_mod in self._reader.execute(
                "SELECT rev, type, key, value, create_rev, prev_value, prev_mod_rev FROM log"
                " WHERE rev >= ? AND key >= ? AND key < ? ORDER BY rev", (start, prefix, _prefix_end(prefix))):
            prev = KeyValue(key, prev_value, create_rev, prev_mod) if prev_mod is not None else None
            out.append(Event(typ, KeyValue(key, value, create_rev, rev), prev))
        return out

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        if start_revision <= self._compact_rev:
            raise CompactedError(start_revision, self._compact_rev)
        w = _Watcher(prefix)
        self._watchers.append(w)
        try:
            # Registered before reading history, so nothing falls between the two.
            past = self._history(prefix, start_revision)
            last = start_revision - 1
            if past:
                last = past[-1].kv.mod_revision
                yield past
            while True:
                events = await w.queue.get()
                if events is None:
                    return
                events = [e for e in events if e.kv.mod_revision > last]
                if events:
                    last = events[-1].kv.mod_revision
                    yield events
        finally:
            self._watchers.remove(w)
