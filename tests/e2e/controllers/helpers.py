"""Helpers for the controllers' end-to-end tests: run `kubesvc controllers` against a
real API server, play the kubelet (node registration, pod status), read with kubectl."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from tests.lib.cluster import APIServer


class ControllersProcess:
    """`kubesvc controllers --server URL ...` as a child process."""

    def __init__(self, server: APIServer, *args: str, via_kubeconfig: bool = False):
        self.server, self.args = server, args
        self.via_kubeconfig = via_kubeconfig
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(server.data_dir) / "controllers.log"

    def start(self) -> "ControllersProcess":
        log = open(self.log_path, "ab")
        target = ["--kubeconfig", str(self.server.kubeconfig)] if self.via_kubeconfig \
            else ["--server", self.server.url]
        self.proc = subprocess.Popen([sys.executable, "-m", "kubesvc.cli", "controllers",
                                      *target, "-v", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: b"kubesvc controllers: running" in self.log_path.read_bytes(), 20,
                 "controllers did not start")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# Waits are for things that normally take milliseconds; on a machine shared by many
# test runs they can take seconds, so no wait gives up in less than this.
MIN_WAIT = 10.0


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.05) -> Any:
    timeout = max(timeout, MIN_WAIT)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as err:  # noqa: BLE001 - keep polling until the deadline
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Kube:
    """Reads and kubelet-style writes over plain HTTP (fast), kubectl where the test is about it."""

    def __init__(self, server: APIServer):
        self.server = server

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def get(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def items(self, path: str) -> list[dict]:
        return (self.get(path) or {}).get("items") or []

    def pods(self, ns: str, selector: str | None = None) -> list[dict]:
        q = f"?labelSelector={selector}" if selector else ""
        return self.items(f"/api/v1/namespaces/{ns}/pods{q}")

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.server.kubectl(*args, **kw)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    # -- playing the kubelet ---------------------------------------------------
    def register_node(self, name: str, labels: dict | None = None, ready: bool = True) -> None:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}}
        try:
            self.request("POST", "/api/v1/nodes", body)
        except urllib.error.HTTPError as err:
            if err.code != 409:
                raise
        self.set_node_ready(name, ready)

    def set_node_ready(self, name: str, ready: bool) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": {"conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
             "lastTransitionTime": now}]}}, "application/merge-patch+json")

    def set_pod(self, ns: str, name: str, ip: str | None, ready: bool, phase: str = "Running") -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        st: dict = {"phase": phase, "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}
        if ip:
            st["podIP"], st["podIPs"] = ip, [{"ip": ip}]
        return self.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": st},
                            "application/merge-patch+json")


class FakeKubelet:
    """Marks every pod of a namespace that is bound and not yet running as Running+Ready
    with an IP, as a kubelet would, until stopped (rollout tests need it continuous)."""

    def __init__(self, kube: Kube, ns: str, ready: bool = True, delay: float = 0.0):
        self.kube, self.ns, self.ready, self.delay = kube, ns, ready, delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next_ip = 10
        self._seen: dict[str, float] = {}

    def __enter__(self) -> "FakeKubelet":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for p in self.kube.pods(self.ns):
                    name = p["metadata"]["name"]
                    if not p["spec"].get("nodeName") or p.get("status", {}).get("podIP"):
                        continue
                    if p["metadata"].get("deletionTimestamp"):
                        continue
                    first = self._seen.setdefault(name, time.monotonic())
                    if time.monotonic() - first < self.delay:
                        continue
                    self._next_ip += 1
                    self.kube.set_pod(self.ns, name, f"10.244.{self._next_ip // 250}.{self._next_ip % 250 + 1}",
                                      self.ready)
            except Exception:  # noqa: BLE001 - a pod deleted under us; try again
                pass
            self._stop.wait(0.05)
