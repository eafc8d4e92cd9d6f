"""`--store etcd`: the same API on a real etcd (a throw-away member on loopback).

The store-level checks mirror the sqlite ones (conditional writes, revisions,
watch with prev values, compaction -> CompactedError); then the real kubectl
drives an API server on it, across a kill -9 of the API server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.lib.cluster import APIServer, free_port

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (Debian: etcd-server)")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    aetcd = pytest.importorskip("aetcd")  # noqa: F841
    d = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    proc = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(d / "data"),
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"t=http://127.0.0.1:{peer}"],
        stdout=open(d / "etcd.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{client}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if json.loads(r.read()).get("health") == "true":
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("etcd did not start: " + (d / "etcd.log").read_text()[-2000:])
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_store_on_etcd(etcd):
    from kubesvc.store.base import CompactedError, KeyExistsError, KeyNotFoundError, RevisionMismatchError
    from kubesvc.store.etcd import EtcdStore

    async def run():
        s = EtcdStore([etcd], history=5, compact_interval=3600)
        await s.start()
        try:
            base = s.revision
            a = await s.create("/t/a", b"1")
            assert a.mod_revision == a.create_revision == base + 1
            with pytest.raises(KeyExistsError):
                await s.create("/t/a", b"x")
            a2 = await s.update("/t/a", b"2", a.mod_revision)
            assert a2.mod_revision == base + 2 and a2.create_revision == base + 1
            with pytest.raises(RevisionMismatchError) as err:
                await s.update("/t/a", b"3", a.mod_revision)
            assert err.value.current.value == b"2"
            with pytest.raises(KeyNotFoundError):
                await s.update("/t/none", b"3", None)
            await s.create("/t/b", b"b")
            await s.create("/tt/c", b"c")
            kvs, rev = await s.range("/t/")
            assert [(kv.key, kv.value) for kv in kvs] == [("/t/a", b"2"), ("/t/b", b"b")] and rev == base + 4
            d = await s.delete("/t/b", None)
            assert d.value == b"b" and d.mod_revision == base + 5
            events = []

            async def collect():
                async for batch in s.watch("/t/", base + 2):
                    events.extend(batch)
                    if len(events) >= 3:
                        return
            await asyncio.wait_for(collect(), 10)
            assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
                ("PUT", "/t/a", base + 2), ("PUT", "/t/b", base + 3), ("DELETE", "/t/b", base + 5)]
            assert events[0].prev.value == b"1" and events[2].kv.value == b"b"
            assert events[1].prev is None and events[1].created  # a creation has no previous version
            # compaction: an old start revision is refused as etcd refuses it
            for i in range(10):
                await s.create(f"/t/n{i}", b"v")
            s.compact_interval = 0.05
            s._compactor.cancel()
            s._compactor = asyncio.create_task(s._compact_loop())
            await asyncio.sleep(0.5)
            with pytest.raises(CompactedError):
                async for _ in s.watch("/t/", base + 1):
                    break
        finally:
            await s.close()

    asyncio.run(run())


def test_kubectl_on_etcd(etcd, tmp_path):
    api = APIServer(tmp_path / "api", extra_args=("--store", "etcd", "--etcd-endpoints", etcd)).start()
    try:
        assert api.kubectl("create", "namespace", "on-etcd").stdout.strip() == "namespace/on-etcd created"
        api.kubectl("create", "configmap", "c1", "-n", "on-etcd", "--from-literal=a=b")
        cm = json.loads(api.kubectl("get", "cm", "c1", "-n", "on-etcd", "-o", "json").stdout)
        rv = cm["metadata"]["resourceVersion"]
        api.kubectl("label", "cm", "c1", "-n", "on-etcd", "x=y")
        api.restart(sig_kill=True)
        names = api.kubectl("get", "ns", "-o", "name").stdout.split()
        assert "namespace/on-etcd" in names and "namespace/kube-system" in names
        cm = json.loads(api.kubectl("get", "cm", "c1", "-n", "on-etcd", "-o", "json").stdout)
        assert cm["metadata"]["labels"] == {"x": "y"}
        # a watch resumed from before the restart replays the label change
        with urllib.request.urlopen(f"{api.url}/api/v1/namespaces/on-etcd/configmaps?watch=true&resourceVersion={rv}"
                                    f"&timeoutSeconds=1", timeout=10) as r:
            events = [json.loads(line) for line in r.read().splitlines() if line.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "c1")]
        r = api.kubectl("create", "configmap", "c1", "-n", "on-etcd", check=False)
        assert 'configmaps "c1" already exists' in r.stderr
        assert api.kubectl("delete", "namespace", "on-etcd", "--timeout=30s").stdout.strip() == \
            'namespace "on-etcd" deleted'
    finally:
        api.stop()
    log = (tmp_path / "api" / "apiserver.log").read_text()
    assert "Traceback" not in log, log[-3000:]
