"""The OpenAPI documents as kubectl reads them: index, per-group-version v3, v2, caching."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kubesvc.apiserver import openapi
from kubesvc.objects.registry import RESOURCES


@pytest.fixture
async def client():
    app = web.Application()
    app.add_routes(openapi.routes())
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_v3_index_lists_each_served_group_version_with_a_hash(client):
    r = await client.get("/openapi/v3")
    assert r.status == 200
    paths = (await r.json())["paths"]
    want = {f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}" for rt in RESOURCES}
    assert set(paths) == want
    for gv, item in paths.items():
        assert item["serverRelativeURL"].startswith(f"/openapi/v3/{gv}?hash=")


async def test_v3_patch_operations_take_field_validation(client):
    """What kubectl's field-validation verifier looks for before sending fieldValidation=Strict."""
    index = (await (await client.get("/openapi/v3")).json())["paths"]
    for rt in RESOURCES:
        gv = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
        doc = orjson.loads(await (await client.get(index[gv]["serverRelativeURL"])).read())
        patches = [p["patch"] for p in doc["paths"].values()
                   if "patch" in p and p["patch"]["x-kubernetes-group-version-kind"]
                   == {"group": rt.group, "version": rt.version, "kind": rt.kind}]
        assert patches, rt.kind
        for op in patches:
            assert any(q["name"] == "fieldValidation" and q["in"] == "query" for q in op["parameters"])
            assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]


async def test_v3_schema_carries_patch_metadata_and_refs_resolve(client):
    r = await client.get("/openapi/v3/api/v1")
    doc = orjson.loads(await r.read())
    schemas = doc["components"]["schemas"]
    ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["type"] == "array"
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    refs: set[str] = set()

    def walk(n):
        if isinstance(n, dict):
            if "$ref" in n:
                refs.add(n["$ref"])
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)
    walk(doc)
    missing = {r for r in refs if r.removeprefix("#/components/schemas/") not in schemas}
    assert not missing
    assert "io.k8s.api.apps.v1.Deployment" not in schemas, "only this group-version's kinds"


async def test_v3_hash_caching_and_redirect(client):
    index = (await (await client.get("/openapi/v3")).json())["paths"]
    url = index["apis/apps/v1"]["serverRelativeURL"]
    r = await client.get(url)
    assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
    etag = r.headers["ETag"]
    r = await client.get(url, headers={"If-None-Match": etag})
    assert r.status == 304
    r = await client.get("/openapi/v3/apis/apps/v1?hash=0000", allow_redirects=False)
    assert r.status == 301 and r.headers["Location"] == url
    assert (await client.get("/openapi/v3/apis/nope/v1")).status == 404


async def test_v2_json_and_gnostic_protobuf(client):
    r = await client.get("/openapi/v2", headers={"Accept": "application/json"})
    assert r.status == 200
    doc = orjson.loads(await r.read())
    assert doc["swagger"] == "2.0"
    assert "/api/v1/namespaces/{namespace}/services/{name}" in doc["paths"]
    assert "io.k8s.api.core.v1.Service" in doc["definitions"]
    r = await client.get("/openapi/v2", headers={"Accept": openapi.PROTOBUF_V2})
    assert r.status == 200
    # kube-openapi answers with a media type Go's mime parser accepts (no "@")
    assert r.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    body = await r.read()
    assert body.startswith(b"\n\x032.0"), "Document.swagger (field 1) comes first"
    assert b"io.k8s.api.core.v1.ServiceSpec" in body and b"x-kubernetes-patch-merge-key" in body
    r = await client.get("/openapi/v2", headers={"Accept": "application/xml"})
    assert r.status == 406
