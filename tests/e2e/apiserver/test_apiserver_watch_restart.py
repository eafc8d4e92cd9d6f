"""resourceVersion semantics over plain HTTP (as client-go's reflector uses them),
and restart safety: kill -9 loses nothing acknowledged, and a watch resumed with
the last seen resourceVersion after a restart misses nothing or gets 410."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.lib.cluster import APIServer

CMS = "/api/v1/namespaces/default/configmaps"


def call(api: APIServer, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(api.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def cm(name: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
            "data": {"k": name}}


def watch(api: APIServer, path: str, timeout: int = 1) -> list[dict]:
    sep = "&" if "?" in path else "?"
    with urllib.request.urlopen(f"{api.url}{path}{sep}watch=true&timeoutSeconds={timeout}", timeout=timeout + 10) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return [json.loads(line) for line in r.read().splitlines() if line.strip()]


def summary(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"].get("metadata", {}).get("name", "")) for e in events]


def test_watch_resource_version_semantics(apiserver):
    ns = "/api/v1/namespaces/kube-public/configmaps"
    assert call(apiserver, "POST", ns, cm("w-a", grp="x"))[0] == 201
    status, lst = call(apiserver, "GET", ns)
    rv = lst["metadata"]["resourceVersion"]
    assert call(apiserver, "POST", ns, cm("w-b", grp="x"))[0] == 201
    # unset / 0: a synthetic ADDED for what exists, then changes
    assert summary(watch(apiserver, ns)) == [("ADDED", "w-a"), ("ADDED", "w-b")]
    assert summary(watch(apiserver, ns + "?resourceVersion=0")) == [("ADDED", "w-a"), ("ADDED", "w-b")]
    # from a list's resourceVersion: only what came after
    assert summary(watch(apiserver, f"{ns}?resourceVersion={rv}")) == [("ADDED", "w-b")]
    # a label selector turns objects leaving the selection into DELETED
    _, obj = call(apiserver, "GET", ns + "/w-a")
    rv2 = obj["metadata"]["resourceVersion"]
    obj["metadata"]["labels"] = {"grp": "y"}
    assert call(apiserver, "PUT", ns + "/w-a", obj)[0] == 200
    ev = watch(apiserver, f"{ns}?resourceVersion={rv2}&labelSelector=grp%3Dx")
    assert summary(ev) == [("ADDED", "w-b"), ("DELETED", "w-a")]
    # bookmarks when allowed (the last one right before the watch times out)
    ev = watch(apiserver, f"{ns}?resourceVersion={rv2}&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dnone")
    assert ev and ev[-1]["type"] == "BOOKMARK" and ev[-1]["object"]["kind"] == "ConfigMap"
    assert int(ev[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv2)
    # sendInitialEvents ends the initial events with an annotated bookmark
    ev = watch(apiserver, f"{ns}?sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion="
                          f"&allowWatchBookmarks=true")
    assert ev[0]["type"] == "ADDED"
    marks = [e for e in ev if e["type"] == "BOOKMARK"]
    assert marks[0]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    call(apiserver, "DELETE", ns + "/w-a")
    call(apiserver, "DELETE", ns + "/w-b")


def test_stale_update_conflicts_and_list_rv(apiserver):
    status, created = call(apiserver, "POST", CMS, cm("cfl"))
    assert status == 201
    rv = created["metadata"]["resourceVersion"]
    created["data"]["k"] = "1"
    assert call(apiserver, "PUT", CMS + "/cfl", created)[0] == 200
    created["data"]["k"] = "2"
    status, err = call(apiserver, "PUT", CMS + "/cfl", created)
    assert status == 409 and err["reason"] == "Conflict"
    assert err["message"] == ('Operation cannot be fulfilled on configmaps "cfl": the object has been modified; '
                              'please apply your changes to the latest version and try again')
    # a no-op update writes nothing
    _, cur = call(apiserver, "GET", CMS + "/cfl")
    _, same = call(apiserver, "PUT", CMS + "/cfl", cur)
    assert same["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"] != rv
    status, err = call(apiserver, "GET", CMS + "?resourceVersionMatch=Exact")
    assert status == 400 and err["message"] == "resourceVersionMatch is forbidden unless resourceVersion is provided"
    status, err = call(apiserver, "DELETE", CMS + "/cfl", {"preconditions": {"uid": "nope"}})
    assert status == 409 and "Precondition failed: UID in precondition: nope" in err["message"]
    assert call(apiserver, "DELETE", CMS + "/cfl")[0] == 200


def test_errors_as_kube_apiserver_words_them(apiserver):
    status, err = call(apiserver, "GET", "/api/v1/namespaces/default/nothings")
    assert status == 404 and err["message"] == "the server could not find the requested resource"
    req = urllib.request.Request(apiserver.url + CMS, method="POST", data=b'{"kind": "ConfigMap", ',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    body = json.loads(e.value.read())
    assert e.value.code == 400 and body["reason"] == "BadRequest"
    assert "unexpected end of JSON input" in body["message"]
    status, err = call(apiserver, "POST", "/api/v1/namespaces/default/services", cm("kindless"))
    assert status == 400
    assert err["message"].startswith('ConfigMap in version "v1" cannot be handled as a Service')
    status, err = call(apiserver, "POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a_b"}})
    assert status == 422 and err["reason"] == "Invalid"
    assert err["details"]["causes"][0]["field"] == "metadata.name"
    status, err = call(apiserver, "PATCH", CMS + "/x", {})
    assert status == 415


def test_kill9_loses_nothing_and_watch_resumes(tmp_path):
    api = APIServer(tmp_path / "srv").start()
    try:
        acked = []
        for i in range(30):
            status, obj = call(api, "POST", CMS, cm(f"d-{i}"))
            assert status == 201
            acked.append(obj["metadata"]["resourceVersion"])
        last_seen = acked[9]
        api.restart(sig_kill=True)
        _, lst = call(api, "GET", CMS)
        names = {o["metadata"]["name"] for o in lst["items"]}
        assert {f"d-{i}" for i in range(30)} <= names
        assert int(lst["metadata"]["resourceVersion"]) >= int(acked[-1])
        # resume a watch from before the restart: every later change, in order
        ev = watch(api, f"{CMS}?resourceVersion={last_seen}")
        assert summary(ev) == [("ADDED", f"d-{i}") for i in range(10, 30)]
        # new writes continue the revision sequence
        _, obj = call(api, "POST", CMS, cm("after"))
        assert int(obj["metadata"]["resourceVersion"]) > int(acked[-1])
    finally:
        api.stop()


def test_too_old_resource_version_is_410(tmp_path):
    api = APIServer(tmp_path / "srv", extra_args=("--watch-history", "20")).start()
    try:
        for i in range(60):
            assert call(api, "POST", CMS, cm(f"o-{i}"))[0] == 201
        ev = watch(api, f"{CMS}?resourceVersion=2")
        assert len(ev) == 1 and ev[0]["type"] == "ERROR"
        st = ev[0]["object"]
        assert st["code"] == 410 and st["reason"] == "Expired"
        assert st["message"].startswith("too old resource version: 2 (")
        api.restart(sig_kill=True)
        ev = watch(api, f"{CMS}?resourceVersion=3")
        assert ev[0]["type"] == "ERROR" and ev[0]["object"]["code"] == 410
    finally:
        api.stop()


def test_lists_at_a_past_revision_are_consistent(apiserver):
    ns = "/api/v1/namespaces/kube-node-lease/configmaps"
    for name in ("snap-a", "snap-b", "snap-c"):
        assert call(apiserver, "POST", ns, cm(name))[0] == 201
    _, first = call(apiserver, "GET", ns + "?limit=1")
    rv = first["metadata"]["resourceVersion"]
    token = first["metadata"]["continue"]
    assert [o["metadata"]["name"] for o in first["items"]] == ["snap-a"]
    # churn after the first page
    _, b = call(apiserver, "GET", ns + "/snap-b")
    b["data"] = {"k": "changed"}
    assert call(apiserver, "PUT", ns + "/snap-b", b)[0] == 200
    assert call(apiserver, "DELETE", ns + "/snap-c")[0] == 200
    assert call(apiserver, "POST", ns, cm("snap-d"))[0] == 201
    # the rest of the list is as it was at the first page's revision
    _, rest = call(apiserver, "GET", ns + f"?limit=10&continue={token}")
    assert rest["metadata"]["resourceVersion"] == rv
    assert [(o["metadata"]["name"], o["data"]["k"]) for o in rest["items"]] == [("snap-b", "snap-b"),
                                                                               ("snap-c", "snap-c")]
    _, exact = call(apiserver, "GET", ns + f"?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert [o["metadata"]["name"] for o in exact["items"]] == ["snap-a", "snap-b", "snap-c"]
    _, now = call(apiserver, "GET", ns)
    assert [o["metadata"]["name"] for o in now["items"]] == ["snap-a", "snap-b", "snap-d"]
    for name in ("snap-a", "snap-b", "snap-d"):
        call(apiserver, "DELETE", f"{ns}/{name}")


def test_events_expire_after_the_event_ttl(tmp_path):
    api = APIServer(tmp_path / "srv", extra_args=("--event-ttl", "2s")).start()
    try:
        ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "short-lived"},
              "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Test",
              "message": "m", "type": "Normal"}
        assert call(api, "POST", "/api/v1/namespaces/default/events", ev)[0] == 201
        assert call(api, "GET", "/api/v1/namespaces/default/events/short-lived")[0] == 200
        deadline = time.monotonic() + 15
        while call(api, "GET", "/api/v1/namespaces/default/events/short-lived")[0] != 404:
            assert time.monotonic() < deadline, "event outlived its TTL"
            time.sleep(0.3)
    finally:
        api.stop()
