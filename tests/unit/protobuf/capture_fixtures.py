"""Record what the real kubectl sends as protobuf, as test fixtures (run by hand).

    python3 -m tests.unit.protobuf.capture_fixtures

starts a minimal fake API server on loopback (discovery plus a recorder for
writes), runs kubectl's typed commands against it, and writes each request body
to fixtures/NAME.pb together with what ``--dry-run=client -o json`` prints for
the same command (fixtures/NAME.json), which is the JSON the body must decode to.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from aiohttp import web

from kubesvc.objects import registry
from tests.lib.cluster import free_port, kubectl_path

HERE = Path(__file__).parent / "fixtures"

# name -> kubectl arguments (a write kubectl sends as protobuf)
COMMANDS: dict[str, list[str]] = {
    "namespace": ["create", "namespace", "team-a"],
    "deployment": ["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
    "deployment_zero": ["create", "deployment", "idle", "--image=nginx", "--replicas=0"],
    "deployment_command": ["create", "deployment", "sleeper", "--image=busybox", "--", "sleep", "3600"],
    "service_clusterip": ["create", "service", "clusterip", "redis", "--tcp=6379:6379"],
    "service_headless": ["create", "service", "clusterip", "myapp-svc-headless", "--clusterip=None", "--tcp=80:80"],
    "service_nodeport": ["create", "service", "nodeport", "myapp", "--tcp=80:80", "--node-port=30080"],
    "service_loadbalancer": ["create", "service", "loadbalancer", "lb", "--tcp=80:8080", "--tcp=443:8443"],
    "service_externalname": ["create", "service", "externalname", "ext", "--external-name=example.com"],
    "configmap": ["create", "configmap", "settings", "--from-literal=mode=fast", "--from-literal=level=3"],
    "configmap_binary": ["create", "configmap", "blob", "--from-file=blob.bin=@BLOB@"],
    "secret": ["create", "secret", "generic", "creds", "--from-literal=user=admin"],
    # --save-config writes the last-applied annotation: metadata.annotations on the wire
    "namespace_saved": ["create", "namespace", "team-b", "--save-config"],
    "deployment_saved": ["create", "deployment", "saved", "--image=nginx", "--save-config"],
}
# commands whose body is not a plain create (no dry-run JSON to compare with)
EXTRA: dict[str, list[str]] = {
    "expose": ["expose", "deployment", "web", "--port=80", "--target-port=8080"],
    "scale": ["scale", "deployment", "web", "--replicas=5"],
}

_DEPLOYMENT = {
    "kind": "Deployment", "apiVersion": "apps/v1",
    "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5", "uid": "u1",
                 "labels": {"app": "web"}},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                   "ports": [{"containerPort": 80}]}]}}},
}


def _resource_list(gv: str, rs) -> dict:
    res = []
    for r in rs:
        res.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": list(r.verbs), "shortNames": list(r.short_names)})
        for s in r.subresources:
            item = {"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": ["get", "patch", "update"]}
            if s == "scale":
                item.update(kind="Scale", group="autoscaling", version="v1")
            res.append(item)
    if gv == "v1":
        res.append({"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret",
                    "verbs": ["create", "get", "list"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res}


class Recorder:
    """A fake API server answering discovery and recording request bodies."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, str, bytes]] = []
        self.port = free_port()

    async def handle(self, req: web.Request) -> web.Response:
        body = await req.read()
        p = req.path
        if req.method != "GET":
            self.bodies.append((req.method, p, req.content_type, body))
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success",
                                      "metadata": {}}, status=201 if req.method == "POST" else 200)
        if p == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if p == "/apis":
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{rs[0].version}", "version": rs[0].version}],
                       "preferredVersion": {"groupVersion": f"{g}/{rs[0].version}", "version": rs[0].version}}
                      for g, rs in registry.groups() if g]
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if p == "/api/v1":
            return web.json_response(_resource_list("v1", [r for r in registry.RESOURCES if not r.group]))
        parts = p.split("/")
        if p.startswith("/apis/") and len(parts) == 4:
            return web.json_response(_resource_list(f"{parts[2]}/{parts[3]}",
                                                    [r for r in registry.RESOURCES if r.group == parts[2]]))
        if p.endswith("/deployments/web/scale"):
            return web.json_response({"kind": "Scale", "apiVersion": "autoscaling/v1",
                                      "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5"},
                                      "spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}})
        if p.endswith("/deployments/web"):
            return web.json_response(_DEPLOYMENT)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "NotFound", "code": 404, "message": "not found"}, status=404)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self.handle)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)


def main() -> None:
    rec = Recorder()
    rec.start()
    tmp = Path(tempfile.mkdtemp())
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{rec.port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "default"}}]}))
    blob = tmp / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    HERE.mkdir(exist_ok=True)

    def run(name: str, args: list[str], dry_run: bool) -> None:
        args = [a.replace("@BLOB@", str(blob)) for a in args]
        before = len(rec.bodies)
        p = subprocess.run([kubectl_path(), *args], env=env, capture_output=True, text=True, timeout=30)
        sent = rec.bodies[before:]
        if not sent:
            print(f"{name}: kubectl sent nothing ({p.stderr.strip()})", file=sys.stderr)
            return
        method, path, ctype, body = sent[-1]
        print(f"{name}: {method} {path} {ctype} {len(body)} bytes")
        if "protobuf" not in ctype:
            print(f"  (not protobuf: {body[:200]!r})")
            return
        (HERE / f"{name}.pb").write_bytes(body)
        if dry_run:
            flags = ["--dry-run=client", "-o", "json"]
            at = args.index("--") if "--" in args else len(args)  # flags go before a command's "--"
            out = subprocess.run([kubectl_path(), *args[:at], *flags, *args[at:]], env=env,
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            (HERE / f"{name}.json").write_text(out)

    for name, args in COMMANDS.items():
        run(name, args, True)
    for name, args in EXTRA.items():
        run(name, args, False)


if __name__ == "__main__":
    main()
