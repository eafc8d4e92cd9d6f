"""The etcd-shaped storage interface the API server writes through.

It owns nothing Kubernetes-specific: keys are strings, values are bytes, and
every write bumps one cluster-wide revision, exactly like etcd v3's MVCC store.
Each method maps one-to-one onto an etcd v3 call, so an etcd backend is a thin
adapter:

=====================  =====================================================
Store method           etcd v3
=====================  =====================================================
get(key)               Range(key)
range(prefix)          Range(prefix, prefix_end) -> kvs + header.revision
create(key, v)         Txn(If CreateRevision(key)==0, Then Put)
update(key, v, rev)    Txn(If ModRevision(key)==rev, Then Put, Else Range)
delete(key, rev)       Txn(If ModRevision(key)==rev, Then DeleteRange(prev_kv))
watch(prefix, rev)     Watch(prefix, start_revision=rev, prev_kv=true)
compact(rev)           Compact(rev)  (watch below it -> ErrCompacted)
=====================  =====================================================

The API server's resourceVersion is the store revision: an object's
resourceVersion is its key's mod_revision, a list's is the store revision at
which it was read.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import AsyncIterator


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision (etcd mvccpb.KeyValue)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change (etcd mvccpb.Event): PUT (created or modified) or DELETE.

    For DELETE, ``kv.mod_revision`` is the revision of the delete and ``kv.value``
    the last value (etcd's prev_kv), so a watcher can still tell what went away.
    """

    type: str  # "PUT" | "DELETE"
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def created(self) -> bool:
        return self.type == "PUT" and self.prev is None


class StoreError(Exception):
    """Base of the store's refusals."""


class KeyExistsError(StoreError):
    """create() of a key that exists."""

    def __init__(self, key: str):
        super().__init__(f"key exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    """update()/delete() of a key that does not exist."""

    def __init__(self, key: str):
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionMismatchError(StoreError):
    """update()/delete() whose expected mod_revision is not the key's (optimistic concurrency)."""

    def __init__(self, key: str, current: KeyValue):
        super().__init__(f"revision mismatch on {key}: now {current.mod_revision}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    """watch() from a revision the store no longer has history for (etcd ErrCompacted)."""

    def __init__(self, requested: int, compact_revision: int):
        super().__init__(f"required revision {requested} has been compacted (compacted at {compact_revision})")
        self.requested = requested
        self.compact_revision = compact_revision


class Store(abc.ABC):
    """A revisioned key-value store; all writes are durable when they return."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open (and recover) the store."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and close."""

    @property
    @abc.abstractmethod
    def revision(self) -> int:
        """The current store revision (0 for an empty store)."""

    @property
    @abc.abstractmethod
    def compact_revision(self) -> int:
        """Watches must start above this revision."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None."""

    @abc.abstractmethod
    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys under prefix (in key order) and the revision they were read at."""

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Put only if absent; raises KeyExistsError."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, mod_revision: int | None) -> KeyValue:
        """Put only if the key exists (and its mod_revision matches, unless None)."""

    @abc.abstractmethod
    async def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        """Delete (only if mod_revision matches, unless None); returns the deleted
        value with mod_revision set to the delete's revision."""

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Events under prefix with revision >= start_revision, in revision order,
        then live ones forever; raises CompactedError if start_revision is compacted."""
