"""The sqlite store behaves as the etcd v3 calls it stands for: revisions,
create-if-absent, update-if-revision, delete, watch from a revision with
bounded history, and everything acknowledged still there after reopening."""

from __future__ import annotations

import asyncio

import pytest

from kubesvc.store.base import CompactedError, KeyExistsError, KeyNotFoundError, RevisionMismatchError
from kubesvc.store.sqlite import SQLiteStore


async def opened(path, **kw) -> SQLiteStore:
    s = SQLiteStore(str(path / "state.db"), **kw)
    await s.start()
    return s


async def test_revisions_and_conditional_writes(tmp_path):
    s = await opened(tmp_path)
    try:
        a = await s.create("/registry/pods/ns/a", b"1")
        b = await s.create("/registry/pods/ns/b", b"2")
        assert (a.mod_revision, b.mod_revision) == (1, 2)
        assert a.create_revision == 1
        with pytest.raises(KeyExistsError):
            await s.create("/registry/pods/ns/a", b"x")
        a2 = await s.update("/registry/pods/ns/a", b"3", 1)
        assert a2.mod_revision == 3 and a2.create_revision == 1
        with pytest.raises(RevisionMismatchError) as err:
            await s.update("/registry/pods/ns/a", b"4", 1)
        assert err.value.current.mod_revision == 3
        with pytest.raises(KeyNotFoundError):
            await s.update("/registry/pods/ns/zz", b"4", None)
        kvs, rev = await s.range("/registry/pods/")
        assert [(kv.key, kv.value) for kv in kvs] == [("/registry/pods/ns/a", b"3"), ("/registry/pods/ns/b", b"2")]
        assert rev == 3
        d = await s.delete("/registry/pods/ns/b", 2)
        assert d.mod_revision == 4 and d.value == b"2"
        assert await s.get("/registry/pods/ns/b") is None
        assert s.revision == 4
    finally:
        await s.close()


async def test_prefix_range_does_not_leak(tmp_path):
    s = await opened(tmp_path)
    try:
        await s.create("/registry/pods/a", b"1")
        await s.create("/registry/podsx/a", b"1")
        kvs, _ = await s.range("/registry/pods/")
        assert [kv.key for kv in kvs] == ["/registry/pods/a"]
    finally:
        await s.close()


async def test_concurrent_writers_get_distinct_revisions(tmp_path):
    s = await opened(tmp_path)
    try:
        kvs = await asyncio.gather(*(s.create(f"/k/{i}", b"v") for i in range(200)))
        assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 201))
        # exactly one of many racing updates on one key wins
        results = await asyncio.gather(*(s.update("/k/0", b"w", 1) for _ in range(10)), return_exceptions=True)
        assert sum(not isinstance(r, Exception) for r in results) == 1
    finally:
        await s.close()


async def _collect(stream, n, timeout=2.0):
    out = []

    async def run():
        async for batch in stream:
            out.extend(batch)
            if len(out) >= n:
                return
    await asyncio.wait_for(run(), timeout)
    return out


async def test_watch_history_then_live(tmp_path):
    s = await opened(tmp_path)
    try:
        await s.create("/a/1", b"1")
        await s.create("/a/2", b"2")
        await s.create("/b/1", b"x")
        stream = s.watch("/a/", 2)
        task = asyncio.ensure_future(_collect(stream, 3))
        await asyncio.sleep(0.05)
        await s.update("/a/1", b"11", None)
        await s.delete("/a/2")
        events = await task
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
            ("PUT", "/a/2", 2), ("PUT", "/a/1", 4), ("DELETE", "/a/2", 5)]
        assert events[1].prev.value == b"1" and not events[1].created
        assert events[2].kv.value == b"2"
    finally:
        await s.close()


async def test_compacted_history_is_refused(tmp_path):
    s = await opened(tmp_path, history=10)
    try:
        for i in range(40):
            await s.create(f"/k/{i}", b"v")
        assert s.compact_revision > 0
        with pytest.raises(CompactedError) as err:
            async for _ in s.watch("/k/", 1):
                break
        assert err.value.compact_revision == s.compact_revision
        # recent history is still there
        events = await _collect(s.watch("/k/", 35), 6)
        assert [e.kv.mod_revision for e in events] == [35, 36, 37, 38, 39, 40]
    finally:
        await s.close()


async def test_reopen_keeps_data_revision_and_history(tmp_path):
    s = await opened(tmp_path)
    await s.create("/k/a", b"1")
    await s.update("/k/a", b"2", 1)
    await s.create("/k/b", b"3")
    await s.delete("/k/b")
    await s.close()
    s = await opened(tmp_path)
    try:
        assert s.revision == 4
        assert (await s.get("/k/a")).value == b"2"
        events = await _collect(s.watch("/k/", 2), 3)
        assert [(e.type, e.kv.mod_revision) for e in events] == [("PUT", 2), ("PUT", 3), ("DELETE", 4)]
        kv = await s.create("/k/c", b"5")
        assert kv.mod_revision == 5
    finally:
        await s.close()


def test_random_operations_match_a_model(tmp_path):
    """Any sequence of writes leaves the store equal to a plain dict model, before and after reopening,
    and a watch from revision 1 replays exactly the sequence of successful writes."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    op = st.tuples(st.sampled_from(["create", "update", "update_stale", "delete"]),
                   st.sampled_from([f"/r/{c}" for c in "abcd"]), st.binary(max_size=4))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(op, max_size=30))
    def run(ops):
        import shutil
        import tempfile
        d = tempfile.mkdtemp(dir=tmp_path)
        try:
            asyncio.run(check(ops, d))
        finally:
            shutil.rmtree(d)

    async def check(ops, d):
        from pathlib import Path
        s = await opened(Path(d))
        model: dict[str, tuple[bytes, int]] = {}
        log = []
        rev = 0
        for kind, key, value in ops:
            try:
                if kind == "create":
                    kv = await s.create(key, value)
                elif kind == "update":
                    kv = await s.update(key, value, model[key][1] if key in model else 1)
                elif kind == "update_stale":
                    kv = await s.update(key, value, (model[key][1] - 1) if key in model else 1)
                else:
                    kv = await s.delete(key)
            except (KeyExistsError, KeyNotFoundError, RevisionMismatchError):
                continue
            rev += 1
            assert kv.mod_revision == rev
            if kind == "delete":
                model.pop(key)
                log.append(("DELETE", key, rev))
            else:
                model[key] = (value, rev)
                log.append(("PUT", key, rev))
        for reopen in (False, True):
            if reopen:
                await s.close()
                s = await opened(Path(d))
            kvs, got_rev = await s.range("/r/")
            assert {kv.key: (kv.value, kv.mod_revision) for kv in kvs} == model
            assert s.revision == rev
            if log:
                events = await _collect(s.watch("/r/", 1), len(log))
                assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == log
        await s.close()

    run()
