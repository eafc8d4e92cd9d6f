"""Informer(transform=...): objects are cached and handed to handlers as the transform made them."""

import asyncio

from lightkube.resources.core_v1 import Service

from kubesvc.client import Informer, make_client


class Slim:
    __slots__ = ("metadata", "ports")

    def __init__(self, svc):
        self.metadata = svc.metadata
        self.metadata.managedFields = None
        self.ports = [p.port for p in svc.spec.ports or ()]


async def test_transform_applies_to_list_and_watch(apiserver):
    client = make_client(server=apiserver.url)
    seen = []
    inf = Informer(client, Service, transform=Slim)
    inf.add_handler(on_add=lambda o: seen.append(o))
    inf.start()
    try:
        await inf.wait_synced(10)
        dns = inf.get("kube-dns", "kube-system")
        assert isinstance(dns, Slim) and 53 in dns.ports  # from the list
        apiserver.kubectl("create", "service", "clusterip", "slim", "--tcp=8080:80")
        for _ in range(200):
            if inf.get("slim", "default") is not None:
                break
            await asyncio.sleep(0.02)
        got = inf.get("slim", "default")
        assert isinstance(got, Slim) and got.ports == [8080]  # from the watch
        assert all(isinstance(o, Slim) for o in seen)
    finally:
        await inf.stop()
        await client.close()


async def test_chunked_list_sees_every_object(apiserver):
    for i in range(5):
        apiserver.kubectl("create", "service", "clusterip", f"page-{i}", "--tcp=80:80")
    client = make_client(server=apiserver.url)
    inf = Informer(client, Service, chunk_size=2)  # several pages of limit/continue
    inf.start()
    try:
        await inf.wait_synced(10)
        names = {o.metadata.name for o in inf.list("default")}
        assert {f"page-{i}" for i in range(5)} <= names
        assert inf.get("kube-dns", "kube-system") is not None
    finally:
        await inf.stop()
        await client.close()
