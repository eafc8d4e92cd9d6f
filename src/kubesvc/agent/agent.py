"""The node agent: wires registration, the pod network, the runtime and the pod workers.

Start-up order matters for adoption: the HTTP endpoint and the Node come first,
then the node network (once the podCIDR is known), then the pods bound to this
node are listed and matched with the state directory — runs still alive are
adopted, runs that ended while the agent was away are recorded as exits (and
restarted as their policy says), records whose pod is gone are cleaned up — and
only then do watch events drive the pod workers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from lightkube.resources.core_v1 import Node, Pod, Service

from kubesvc.agent import procs
from kubesvc.agent.events import EventRecorder
from kubesvc.agent.network import PodNetwork
from kubesvc.agent.node import NodeRegistrar
from kubesvc.agent.runtime import Runtime, read_exit
from kubesvc.agent.server import make_app
from kubesvc.agent.state import IPAM, PodRecord, StateDir, rotate_log
from kubesvc.agent.status import StatusManager
from kubesvc.agent.worker import PodWorker
from kubesvc.client import Informer

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    node_name: str
    node_ip: str
    state_dir: Path
    pod_cidr: str | None = None
    cluster_cidr: str = "10.244.0.0/16"
    listen_port: int = 10250
    address: str = "0.0.0.0"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    netns_prefix: str = ""
    backoff_base: float = 10.0
    lease_renew: float = 10.0
    kill_pods_on_exit: bool = False
    container_log_max_size: int = 10 * 1024 * 1024


class Agent:
    """kubesvc's kubelet: runs the pods bound to one node."""

    def __init__(self, client, cfg: AgentConfig):
        self.client = client
        self.cfg = cfg
        self.node_name, self.node_ip = cfg.node_name, cfg.node_ip
        self.cluster_dns, self.cluster_domain = cfg.cluster_dns, cfg.cluster_domain
        self.backoff_base = cfg.backoff_base
        self.netns_prefix = cfg.netns_prefix or cfg.node_name
        self.isolated = procs.is_root()
        self.state = StateDir(cfg.state_dir)
        self.ipam = IPAM(cfg.state_dir)
        self.network = PodNetwork(cfg.cluster_cidr, self.netns_prefix)
        self.runtime = Runtime(self.isolated, cfg.state_dir / "shim.sh")
        self.events = EventRecorder(client, cfg.node_name)
        self.status = StatusManager(client)
        self.workers: dict[str, PodWorker] = {}
        self.registrar = NodeRegistrar(client, name=cfg.node_name, ip=cfg.node_ip, port=cfg.listen_port,
                                       state_dir=cfg.state_dir, pod_cidr=cfg.pod_cidr,
                                       lease_renew=cfg.lease_renew, network_error=self.network_error)
        self.pods: Informer | None = None
        self.nodes: Informer | None = None
        self.svcs: Informer | None = None
        self._tasks: list[asyncio.Task] = []

    # -- helpers the workers use -------------------------------------------------
    def save(self, rec: PodRecord) -> None:
        self.state.save(rec)

    def services(self) -> list:
        return self.svcs.list() if self.svcs is not None else []

    def worker_by_name(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            if w.rec.namespace == namespace and w.rec.name == name:
                return w
        return None

    def network_error(self) -> str | None:
        if not self.isolated:
            return None  # hostNetwork pods only; each other pod says why it cannot run
        if self.network.pod_cidr is None:
            return "no podCIDR assigned to this node yet"
        return None

    # -- run ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        runner = web.AppRunner(make_app(self), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.cfg.address, self.cfg.listen_port).start()
        self.events.start()
        self.status.start()
        node = await self.registrar.register()
        log.info("node %s registered (InternalIP %s, agent port %d)", self.node_name, self.node_ip,
                 self.cfg.listen_port)
        cidr = self.cfg.pod_cidr or (node.spec.podCIDR if node.spec else None)
        if cidr:
            await self._network_ready(cidr)

        self.pods = Informer(self.client, Pod, fields={"spec.nodeName": self.node_name})
        self.nodes = Informer(self.client, Node)
        self.svcs = Informer(self.client, Service)
        for inf in (self.pods, self.nodes, self.svcs):
            inf.start()
        await asyncio.gather(self.pods.wait_synced(), self.nodes.wait_synced(), self.svcs.wait_synced())
        await self._adopt()
        self.pods.add_handler(on_add=self._pod_added, on_update=lambda old, new: self._pod_added(new),
                              on_delete=self._pod_deleted)
        self.nodes.add_handler(on_add=self._node_changed, on_update=lambda o, n: self._node_changed(n),
                               on_delete=self._node_changed)
        self._tasks.append(asyncio.create_task(self.registrar.run(), name="node-heartbeat"))
        self._tasks.append(asyncio.create_task(self._rotate_logs(), name="log-rotation"))
        log.info("agent ready: %d pods on this node", len(self.workers))
        try:
            await stop.wait()
        finally:
            await self.shutdown(runner)

    async def shutdown(self, runner: web.AppRunner) -> None:
        for t in self._tasks:
            t.cancel()
        for inf in (self.pods, self.nodes, self.svcs):
            if inf is not None:
                await inf.stop()
        workers = list(self.workers.values())
        if self.cfg.kill_pods_on_exit:
            for w in workers:
                w.deleted()  # stop them as if deleted, keeping the API objects
                w.gone = True
            await asyncio.gather(*(w.done.wait() for w in workers))
        else:
            for w in workers:  # pods keep running: the next agent adopts them
                if w.task:
                    w.task.cancel()
                for c in w.containers.values():
                    if c.handle is not None:
                        self.runtime.unwatch(c.handle)
                    for p in c.probes:
                        p.stop()
        await self.events.stop()
        await runner.cleanup()
        self.network.close()

    async def _network_ready(self, cidr: str) -> None:
        if not self.isolated or self.network.pod_cidr == str(ipaddress.ip_network(cidr, strict=False)):
            return
        for warning in await self.network.setup_node(cidr):
            log.warning("%s", warning)
        log.info("pod network ready: bridge cni0 on %s", cidr)
        self.registrar.changed()
        if self.nodes is not None and self.nodes.has_synced:
            self._node_changed(None)
        for w in self.workers.values():
            w.wake()

    # -- adoption ----------------------------------------------------------------------
    async def _adopt(self) -> None:
        same_boot = self.state.check_boot()
        by_uid = {p.metadata.uid: p for p in self.pods.list()}
        for rec in self.state.load_all():
            pod = by_uid.get(rec.uid)
            if pod is None or pod.spec.nodeName != self.node_name:
                await self._cleanup_orphan(rec, same_boot)
                continue
            w = PodWorker(self, pod, rec)
            self.workers[rec.uid] = w
            adopted = 0
            for name, c in w.containers.items():
                if not c.rec.pid:
                    continue
                h = self.runtime.adopt(c.rec.pid, c.rec.pid_start, c.rec.init_pid,
                                       self.state.exit_path(rec.uid, name, c.rec.restart_count)) if same_boot else None
                if h is not None:
                    w.adopt(c, h)
                    adopted += 1
                else:
                    # The run ended while no agent watched (or the node rebooted).
                    code = read_exit(self.state.exit_path(rec.uid, name, c.rec.restart_count))
                    c.handle = None
                    c.rec.last = {"exitCode": 255 if code is None else code,
                                  "reason": "Unknown" if code is None else ("Completed" if code == 0 else "Error"),
                                  "startedAt": c.rec.started_at, "finishedAt": c.rec.started_at,
                                  "containerID": c.rec.container_id}
                    c.rec.pid = c.rec.pid_start = c.rec.init_pid = 0
            log.info("pod %s/%s: adopted %d running container(s)", rec.namespace, rec.name, adopted)
            self._spawn(w)

    async def _cleanup_orphan(self, rec: PodRecord, same_boot: bool) -> None:
        log.info("pod %s/%s (%s) is gone: cleaning up what is left of it", rec.namespace, rec.name, rec.uid)
        if same_boot:
            for c in rec.containers.values():
                if c.pid and procs.alive(c.pid, c.pid_start):
                    procs.send(c.init_pid, signal.SIGKILL)
                    procs.send(c.pid, signal.SIGKILL)
                    if not self.isolated:
                        procs.kill_group(c.pid)
        if rec.netns or rec.veth:
            try:
                await self.network.teardown_pod(rec.netns, rec.veth)
            except Exception as err:
                log.warning("teardown of %s: %s", rec.netns, err)
        if not rec.host_network:
            self.ipam.release(rec.ip, rec.uid)
        self.state.remove(rec.uid)

    # -- events --------------------------------------------------------------------------
    def _pod_added(self, pod: Pod) -> None:
        if pod.spec.nodeName != self.node_name:
            return
        uid = pod.metadata.uid
        w = self.workers.get(uid)
        if w is None:
            if pod.status and pod.status.phase in ("Succeeded", "Failed") and pod.metadata.deletionTimestamp is None:
                return  # finished before this agent knew it; nothing to run
            self._spawn(PodWorker(self, pod))
        else:
            w.update(pod)

    async def _rotate_logs(self) -> None:
        """Cap each running container's log at --container-log-max-size, as kubelet does."""
        limit = self.cfg.container_log_max_size
        while True:
            await asyncio.sleep(10)
            for w in list(self.workers.values()):
                for c in w.containers.values():
                    if c.handle is None:
                        continue
                    rotate_log(self.state.log_path(w.uid, c.spec.name, c.rec.restart_count), limit)

    def _spawn(self, w: PodWorker) -> None:
        self.workers[w.uid] = w
        w.start()
        w.task.add_done_callback(lambda _t, uid=w.uid: self.workers.get(uid) is w and self.workers.pop(uid))
        w.wake()

    def _pod_deleted(self, pod: Pod) -> None:
        w = self.workers.get(pod.metadata.uid)
        if w is not None:
            w.deleted()

    def _node_changed(self, _node) -> None:
        peers: dict[str, str] = {}
        for n in self.nodes.list():
            if n.metadata.name == self.node_name:
                if n.spec and n.spec.podCIDR and self.network.pod_cidr is None:
                    asyncio.create_task(self._network_ready(n.spec.podCIDR))
                continue
            cidr = n.spec.podCIDR if n.spec else None
            ip = next((a.address for a in (n.status.addresses or []) if a.type == "InternalIP"),
                      None) if n.status else None
            if cidr and ip and ip != self.node_ip:
                peers[str(ipaddress.ip_network(cidr, strict=False))] = ip
        if self.isolated and self.network.pod_cidr is not None:
            asyncio.create_task(self.network.sync_routes(peers))
