"""This node's Node object and its heartbeats, as kubelet keeps them.

Registration creates the Node (or takes over an existing one of the same name)
with the kubernetes.io/{hostname,os,arch} labels and, when the agent was given
--pod-cidr, spec.podCIDR. Status carries InternalIP/Hostname addresses,
capacity/allocatable, nodeInfo, daemonEndpoints (the agent's HTTP port, where the
API server proxies pods/log) and the Ready/pressure conditions; it is re-sent
when it changes and at least every `status_report` seconds. A Lease named after
the node in kube-node-lease is renewed every `lease_renew` seconds: a node
lifecycle controller marks the node NotReady when renewals stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from lightkube import codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace, Node
from lightkube.types import PatchType

from kubesvc.agent.events import now_rfc3339

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
KUBELET_VERSION = "v1.30.0-kubesvc"


def _meminfo_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def node_info() -> dict:
    return {
        "machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
        "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
        "osImage": _os_image(), "containerRuntimeVersion": "kubesvc://0.1.0",
        "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux", "architecture": _arch(),
    }


def capacity(state_dir: Path, max_pods: int) -> dict:
    du = shutil.disk_usage(state_dir)
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{_meminfo_kib()}Ki",
            "ephemeral-storage": f"{du.total // 1024}Ki", "pods": str(max_pods)}


class NodeRegistrar:
    """Registers the Node, keeps its status and Lease fresh, and reads back its podCIDR."""

    def __init__(self, client, *, name: str, ip: str, port: int, state_dir: Path,
                 pod_cidr: str | None, max_pods: int = 110, status_report: float = 60.0,
                 lease_renew: float = 10.0, network_error: Callable[[], str | None] = lambda: None):
        self.client = client
        self.name, self.ip, self.port = name, ip, port
        self.state_dir = state_dir
        self.pod_cidr = pod_cidr
        self.max_pods = max_pods
        self.status_report = status_report
        self.lease_renew = lease_renew
        self.network_error = network_error
        self.uid: str | None = None
        self._since: dict[str, tuple[str, str]] = {}
        self._sent: dict | None = None
        self._sent_at = 0.0
        self._wake = asyncio.Event()

    def labels(self) -> dict:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(), "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": _arch()}

    async def register(self) -> Node:
        """Create the Node, or adopt the one that exists; retries until the API answers."""
        while True:
            try:
                return await self._register()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("registering node %s: %s; retrying", self.name, err)
                await asyncio.sleep(1)

    async def _register(self) -> Node:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels()}, "spec": {}}
        if self.pod_cidr:
            body["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
        try:
            node = await self.client.create(codecs.from_dict(body))
        except ApiError as err:
            if err.status.code != 409:
                raise
            patch: dict = {"metadata": {"labels": self.labels()}}
            existing = await self.client.get(Node, self.name)
            if self.pod_cidr and not (existing.spec and existing.spec.podCIDR):
                patch["spec"] = body["spec"]
            node = await self.client.patch(Node, self.name, patch, patch_type=PatchType.MERGE)
        self.uid = node.metadata.uid
        await self.send_status(force=True)
        return node

    def status(self) -> dict:
        cap = capacity(self.state_dir, self.max_pods)
        net_err = self.network_error()
        ready = net_err is None
        now = now_rfc3339()
        conds = []
        for type_, ok_status, reason, message in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady",
             "kubelet is posting ready status" if ready else
             f"container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
             f"message:{net_err}"),
        ):
            prev = self._since.get(type_)
            if prev is None or prev[0] != ok_status:
                prev = (ok_status, now)
                self._since[type_] = prev
            conds.append({"type": type_, "status": ok_status, "reason": reason, "message": message,
                          "lastHeartbeatTime": now, "lastTransitionTime": prev[1]})
        return {
            "addresses": [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}],
            "capacity": cap, "allocatable": cap, "conditions": conds,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": node_info(),
        }

    @staticmethod
    def _comparable(status: dict) -> dict:
        s = dict(status)
        s["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in s["conditions"]]
        return s

    async def send_status(self, force: bool = False) -> None:
        st = self.status()
        loop = asyncio.get_running_loop()
        cmp = self._comparable(st)
        if not force and cmp == self._sent and loop.time() - self._sent_at < self.status_report:
            return
        await self.client.patch(Node.Status, self.name, {"status": st}, patch_type=PatchType.MERGE)
        self._sent, self._sent_at = cmp, loop.time()

    def changed(self) -> None:
        """Something the status shows changed (the network became ready): send it soon."""
        self._wake.set()

    async def run(self) -> None:
        """Heartbeats: Lease renewals and status updates, until cancelled."""
        await self._ensure_lease_namespace()
        while True:
            try:
                await self.renew_lease()
                await self.send_status()
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.status.code == 404:  # the Node was deleted: register again, as kubelet does
                    await self.register()
                else:
                    log.warning("node heartbeat: %s", err)
            except Exception as err:
                log.warning("node heartbeat: %s: %s", type(err).__name__, err)
            try:
                await asyncio.wait_for(self._wake.wait(), self.lease_renew)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _ensure_lease_namespace(self) -> None:
        try:
            await self.client.create(Namespace(metadata=ObjectMeta(name=LEASE_NAMESPACE)))
        except ApiError as err:
            if err.status.code not in (409, 403):
                log.warning("namespace %s: %s", LEASE_NAMESPACE, err)
        except Exception as err:
            log.warning("namespace %s: %s", LEASE_NAMESPACE, err)

    async def renew_lease(self) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now}
        try:
            await self.client.patch(Lease, self.name, {"spec": spec}, namespace=LEASE_NAMESPACE,
                                    patch_type=PatchType.MERGE)
        except ApiError as err:
            if err.status.code != 404:
                raise
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}] if self.uid else []
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                    "spec": spec}
            await self.client.create(codecs.from_dict(body))
