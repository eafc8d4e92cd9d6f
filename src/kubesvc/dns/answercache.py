"""The answer cache: prebuilt wire-format responses for cluster names.

Entries live until the objects they were built from change -- never by TTL:
``ClusterZone`` reports the dependencies each change touched and ``invalidate``
drops exactly the entries filed under them. Negative answers (NXDOMAIN and
NODATA) carry the SOA serial, which moves on every change, so they are all
dropped on any change. Per-entry hit counters feed ``coredns_cache_hits_total``
without a lock or a label lookup on the hot path.
"""

from __future__ import annotations

from kubesvc.dns.wire import Prebuilt


class Entry:
    """One prebuilt response and how often it was served."""

    # The Prebuilt's fields are kept here directly (one object per answer, not two):
    # an Entry can be passed wherever a Prebuilt is expected.
    __slots__ = ("hdr", "tail", "rcode", "size", "edns", "hits", "qtype", "negative", "tails", "turn")

    def __init__(self, p: Prebuilt, qtype: int, negative: bool, tails: tuple[bytes, ...] | None = None):
        self.hdr, self.tail, self.rcode, self.size, self.edns = p
        # Rotations of a multi-address answer, served in turn (CoreDNS's loadbalance plugin,
        # in the Corefile Kubernetes ships, reorders A/AAAA records per response).
        self.tails = tails
        self.turn = 0
        self.hits = 0
        self.qtype = qtype
        self.negative = negative

    def next_tail(self) -> bytes:
        tails = self.tails
        if tails is None:
            return self.tail
        self.turn += 1
        return tails[self.turn % len(tails)]


class AnswerCache:
    """cache key (see ``wire.parse_query``) -> Entry, with a dependency index for invalidation."""

    def __init__(self, max_entries: int = 200_000):
        self.entries: dict[bytes, Entry] = {}
        self.by_dep: dict[tuple, list[bytes] | set[bytes]] = {}
        self.negative: set[bytes] = set()
        self.max_entries = max_entries
        # called after any invalidation or clear (the UDP server drops what it derived)
        self.on_invalidate: list = []
        # hits of entries since dropped, by (qtype, rcode, negative), so counters never go back
        self.retired: dict[tuple[int, int, bool], int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: bytes, p: Prebuilt, deps: set, negative: bool,
            tails: tuple[bytes, ...] | None = None) -> Entry:
        if len(self.entries) >= self.max_entries:
            # Past the cap (e.g. a flood of random names) start over rather than track recency.
            self.clear()
        # the key ends with QTYPE, QCLASS (2 bytes each) and the EDNS byte
        e = Entry(p, (key[-5] << 8) | key[-4], negative, tails)
        self._drop(key)
        self.entries[key] = e
        if negative:
            self.negative.add(key)
        by_dep = self.by_dep
        for d in deps:
            # lists, not sets: a dependency has a handful of answers, and 10k sets cost megabytes
            keys = by_dep.get(d)
            if keys is None:
                by_dep[d] = [key]
            elif type(keys) is list:
                if key not in keys:
                    keys.append(key)
                    if len(keys) > 16:  # a popular dependency (a namespace's pods): a set scales
                        by_dep[d] = set(keys)
            else:
                keys.add(key)
        return e

    def _drop(self, key: bytes) -> None:
        e = self.entries.pop(key, None)
        if e is not None and e.hits:
            self._retire(e)

    def _retire(self, e: Entry) -> None:
        k = (e.qtype, e.rcode, e.negative)
        self.retired[k] = self.retired.get(k, 0) + e.hits

    def invalidate(self, deps: set) -> int:
        """Drop the entries built from any of ``deps`` and all negative ones; returns how many."""
        if not deps:
            return 0
        before = len(self.entries)
        for d in deps:
            for key in self.by_dep.pop(d, ()):
                self._drop(key)
        for key in self.negative:
            self._drop(key)
        self.negative.clear()
        for cb in self.on_invalidate:
            cb()
        return before - len(self.entries)

    def clear(self) -> None:
        for e in self.entries.values():
            if e.hits:
                self._retire(e)
        self.entries.clear()
        self.by_dep.clear()
        self.negative.clear()
        for cb in self.on_invalidate:
            cb()

    def hits(self) -> int:
        return sum(self.retired.values()) + sum(e.hits for e in self.entries.values())
