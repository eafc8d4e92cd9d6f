"""One pod's life on this node: sandbox, containers, restarts, probes, termination.

Like kubelet's pod workers: each pod has one task that reconciles what runs with
what the pod spec asks, woken by spec updates, container exits, probe results
and back-off timers, and publishing the resulting status after each pass.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Pod

from kubesvc.agent import network, podspec
from kubesvc.agent.events import now_rfc3339
from kubesvc.agent.probes import ProbeWorker
from kubesvc.agent.runtime import Handle, LaunchSpec
from kubesvc.agent.state import ContainerRecord, PodRecord, write_atomic
from kubesvc.agent.status import PodConditions, pod_phase

if TYPE_CHECKING:
    from kubesvc.agent.agent import Agent

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0


def restart_backoff(current: float, ran: float, base: float) -> tuple[float, float]:
    """(delay before this restart, the next one) after a run of `ran` seconds ended.

    As kubelet's back-off: the first restart at once, then base (10s), doubling, up to
    5 minutes; a run that lasted twice the maximum starts the sequence again.
    """
    if ran >= 2 * MAX_BACKOFF:
        current = 0.0
    return current, (min(MAX_BACKOFF, current * 2) if current else base)


@dataclass
class ContainerRun:
    """The live state of one container of a pod (the persisted part is `rec`)."""

    spec: Any
    rec: ContainerRecord
    handle: Handle | None = None
    waiting: tuple[str, str] = ("ContainerCreating", "")
    init: bool = False                 # an init container: runs to completion, in order, first
    ready: bool = False
    started: bool = False
    probes: list[ProbeWorker] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    backoff: float = 0.0               # the delay before the next restart after a crash
    restart_at: float = 0.0            # monotonic time the pending restart may happen
    ran_since: float = 0.0             # monotonic start of the current run
    stopping: bool = False


class PodWorker:
    """Runs one pod (by UID) until it is deleted and cleaned up."""

    def __init__(self, agent: "Agent", pod: Pod, rec: PodRecord | None = None):
        self.agent = agent
        self.pod = pod
        self.uid = pod.metadata.uid
        self.rec = rec or PodRecord(uid=self.uid, namespace=pod.metadata.namespace,
                                    name=pod.metadata.name, host_network=bool(pod.spec.hostNetwork))
        self.containers: dict[str, ContainerRun] = {}
        self.conditions = PodConditions(pod.status.conditions if pod.status else None)
        self.start_time = _ts(pod.status.startTime) if pod.status and pod.status.startTime else now_rfc3339()
        self.sandbox_ready = False
        self.sandbox_error = ""
        self.gone = False  # the API object is deleted
        self._wake = asyncio.Event()
        self._timer: asyncio.Handle | None = None
        self._timer_due = 0.0  # loop time self._timer fires at
        self.task: asyncio.Task | None = None
        self.done = asyncio.Event()
        inits = list(pod.spec.initContainers or [])
        for c in inits + list(pod.spec.containers):
            self.containers[c.name] = ContainerRun(spec=c, rec=self.rec.containers.get(c.name)
                                                   or ContainerRecord(name=c.name), init=c in inits)
            self.rec.containers[c.name] = self.containers[c.name].rec

    # -- inputs ----------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=f"pod-{self.rec.namespace}/{self.rec.name}")

    def update(self, pod: Pod) -> None:
        self.pod = pod
        self.wake()

    def deleted(self) -> None:
        self.gone = True
        self.wake()

    def wake(self, delay: float = 0.0) -> None:
        if delay <= 0:
            self._wake.set()
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if self._timer is not None:  # set until it fires or is replaced
            if self._timer_due <= when:
                return  # an earlier wake-up is already due
            self._timer.cancel()
        # The due time is kept here: uvloop's call_at returns a plain Handle (no .when())
        # for delays under a millisecond.
        self._timer_due = when
        self._timer = loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._wake.set()

    @property
    def terminating(self) -> bool:
        return self.gone or self.pod.metadata.deletionTimestamp is not None

    # -- the loop ----------------------------------------------------------------
    async def _loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.terminating:
                    await self._terminate()
                    return
                try:
                    await self._sync()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("pod %s/%s: sync failed", self.rec.namespace, self.rec.name)
                    self.wake(5)
                self._publish()
        finally:
            self.done.set()

    async def _sync(self) -> None:
        if not await self._ensure_sandbox():
            return
        now = time.monotonic()
        if not self.initialized:
            # Init containers one at a time, in order; the app containers wait for all of them.
            for c in self.init_containers:
                if self._init_done(c):
                    continue
                if c.handle is None and not c.stopping and self._should_start(c):
                    if c.restart_at > now:
                        self.wake(c.restart_at - now)
                    else:
                        await self._start_container(c)
                break
            self.agent.save(self.rec)
            if not self.initialized:
                return
        for c in self.app_containers:
            if c.handle is not None or c.stopping:
                continue
            if not self._should_start(c):
                continue
            if c.restart_at > now:
                self.wake(c.restart_at - now)
                continue
            await self._start_container(c)
        self.agent.save(self.rec)

    @property
    def init_containers(self) -> list[ContainerRun]:
        return [c for c in self.containers.values() if c.init]

    @property
    def app_containers(self) -> list[ContainerRun]:
        return [c for c in self.containers.values() if not c.init]

    @staticmethod
    def _init_done(c: ContainerRun) -> bool:
        return c.handle is None and c.rec.last is not None and c.rec.last.get("exitCode") == 0

    @property
    def initialized(self) -> bool:
        return all(self._init_done(c) for c in self.init_containers)

    def _should_start(self, c: ContainerRun) -> bool:
        if not c.rec.started_at and c.rec.last is None:
            return True  # never ran
        last = c.rec.last or {}
        policy = self.pod.spec.restartPolicy or "Always"
        if c.init:  # an init container is retried until it succeeds, unless Never
            return policy != "Never" and last.get("exitCode", 1) != 0
        if policy == "Always":
            return True
        if policy == "OnFailure":
            return last.get("exitCode", 1) != 0
        return False

    # -- sandbox -----------------------------------------------------------------
    async def _ensure_sandbox(self) -> bool:
        if self.sandbox_ready:
            return True
        a = self.agent
        pod = self.pod
        if pod.spec.hostNetwork:
            self.rec.ip = a.node_ip
        else:
            if not a.isolated:
                self._sandbox_failed("kubesvc agent is not running as root: only hostNetwork pods can "
                                     "run (pod networks need network namespaces)")
                return False
            if a.network.pod_cidr is None:
                self._sandbox_failed("network is not ready: this node has no podCIDR yet "
                                     "(set --pod-cidr or run the node IPAM controller)", retry=None)
                return False
            try:
                if not self.rec.ip:
                    self.rec.ip = a.ipam.allocate(a.network.pod_cidr, self.uid)
                self.rec.netns = self.rec.netns or network.netns_name(
                    a.netns_prefix, pod.metadata.namespace, pod.metadata.name, self.uid)
                self.rec.veth = network.veth_name(self.uid)
                a.save(self.rec)
                await a.network.setup_pod(self.rec.netns, self.rec.veth, self.rec.ip)
            except Exception as err:
                self._sandbox_failed(f"failed to set up the pod network: {err}", retry=5)
                return False
        # Per-pod files the containers see as /etc/resolv.conf and /etc/hosts.
        d = a.state.pod_dir(self.uid)
        resolv = podspec.resolv_conf(pod, a.cluster_dns, a.cluster_domain)
        if resolv is not None:
            write_atomic(d / "resolv.conf", resolv)
        if not pod.spec.hostNetwork:
            write_atomic(d / "hosts", podspec.hosts_file(pod, self.rec.ip, a.cluster_domain))
        self.sandbox_ready = True
        self.sandbox_error = ""
        return True

    def _sandbox_failed(self, message: str, retry: float | None = 5) -> None:
        if message != self.sandbox_error:
            self.agent.events.pod(self.pod, "FailedCreatePodSandBox", message, warning=True)
        self.sandbox_error = message
        for c in self.containers.values():
            c.waiting = ("ContainerCreating", message)
        if retry:
            self.wake(retry)

    # -- containers ----------------------------------------------------------------
    async def _start_container(self, c: ContainerRun) -> None:
        a, pod, spec = self.agent, self.pod, c.spec
        try:
            cms = {}
            for name in podspec.configmap_names(spec):
                try:
                    cm = await a.client.get(ConfigMap, name, namespace=pod.metadata.namespace)
                    cms[name] = dict(cm.data or {})
                except ApiError as err:
                    if err.status.code != 404:
                        raise
                    cms[name] = None
            hostname = a.node_name if pod.spec.hostNetwork else podspec.pod_hostname(pod)
            svc_env = podspec.service_env(a.services(), pod.metadata.namespace,
                                          pod.spec.enableServiceLinks is not False)
            env = podspec.container_env(pod, spec, configmaps=cms, services_env=svc_env,
                                        pod_ip=self.rec.ip, host_ip=a.node_ip, hostname=hostname)
            argv = podspec.argv(spec, env)
        except podspec.ConfigError as err:
            if c.waiting != ("CreateContainerConfigError", str(err)):
                a.events.pod(pod, "Failed", f"Error: {err}", warning=True, container=spec.name)
            c.waiting = ("CreateContainerConfigError", str(err))
            self.wake(10)
            return
        first = not c.rec.started_at and c.rec.last is None
        if not first:
            c.rec.restart_count += 1
        rc = c.rec.restart_count
        d = a.state.pod_dir(self.uid)
        launch = LaunchSpec(
            argv=argv, env=env, log_path=a.state.log_path(self.uid, spec.name, rc),
            exit_path=a.state.exit_path(self.uid, spec.name, rc), working_dir=spec.workingDir or "",
            hostname="" if pod.spec.hostNetwork else hostname,
            resolv_conf=str(d / "resolv.conf") if (d / "resolv.conf").exists() else "",
            hosts=str(d / "hosts") if (d / "hosts").exists() else "",
            netns="" if pod.spec.hostNetwork else self.rec.netns)
        # Only the current and the previous run's logs are kept, as kubelet keeps them.
        for old in (a.state.log_path(self.uid, spec.name, rc - 2), a.state.exit_path(self.uid, spec.name, rc - 2)):
            old.unlink(missing_ok=True)
        if first:
            a.events.pod(pod, "Pulled", f'Container image "{spec.image}" already present on machine',
                         container=spec.name)
        try:
            h = a.runtime.start(launch)
        except OSError as err:
            c.waiting = ("RunContainerError", str(err))
            a.events.pod(pod, "Failed", f"Error: {err}", warning=True, container=spec.name)
            self.wake(10)
            return
        c.rec.container_id = "kubesvc://" + secrets.token_hex(16)
        c.rec.pid, c.rec.pid_start = h.pid, h.pid_start
        c.rec.started_at = now_rfc3339()
        c.handle, c.env = h, env
        c.ran_since = time.monotonic()
        a.save(self.rec)
        asyncio.create_task(self._record_init(c, h))  # not on the start path: Running is already true
        a.events.pod(pod, "Created", f"Created container {spec.name}", container=spec.name)
        a.events.pod(pod, "Started", f"Started container {spec.name}", container=spec.name)
        self._running(c)

    async def _record_init(self, c: ContainerRun, h: Handle) -> None:
        await self.agent.runtime.find_init(h)
        if c.handle is h and h.init_pid:
            c.rec.init_pid = h.init_pid
            self.agent.save(self.rec)

    def adopt(self, c: ContainerRun, h: Handle) -> None:
        """Take over a run an earlier agent started."""
        c.handle = h
        c.ran_since = time.monotonic()
        self._running(c)

    def _running(self, c: ContainerRun) -> None:
        """Watch the run's exit and start its probes."""
        a, spec = self.agent, c.spec
        a.runtime.watch(c.handle, lambda code, known, h=c.handle: self._exited(c, h, code, known))
        c.started = spec.startupProbe is None
        c.ready = spec.readinessProbe is None and c.started
        prefix = lambda c=c: self._exec_prefix(c)  # noqa: E731 - the init pid may come later
        for kind, probe in (("startup", spec.startupProbe), ("readiness", spec.readinessProbe),
                            ("liveness", spec.livenessProbe)):
            if probe is None:
                continue
            gate = (lambda: True) if kind == "startup" else (lambda c=c: c.started)
            w = ProbeWorker(kind, probe, spec, pod_ip=self.rec.ip, exec_prefix=prefix, env=c.env,
                            gate=gate, on_result=lambda k, ok, msg, changed, c=c, h=c.handle:
                            # a result that lands after its run ended is about nothing
                            c.handle is h and self._probed(c, k, ok, msg, changed))
            w.start()
            c.probes.append(w)

    def _exec_prefix(self, c: ContainerRun) -> list[str] | None:
        """How to run a command inside the container (None: not possible right now)."""
        if not self.agent.isolated:
            return []
        init = self.agent.runtime.init_pid(c.handle) if c.handle else 0
        if not init:
            return None
        return ["nsenter", "-t", str(init), "-m", "-p", "-u", "-n", "-w", "--"]

    def _probed(self, c: ContainerRun, kind: str, ok: bool, message: str, changed: bool) -> None:
        if not ok and message:
            what = {"readiness": "Readiness", "liveness": "Liveness", "startup": "Startup"}[kind]
            self.agent.events.pod(self.pod, "Unhealthy", f"{what} probe failed: {message}", warning=True,
                                  container=c.spec.name)
        if not changed:
            return
        if kind == "readiness":
            c.ready = ok
        elif kind == "startup" and ok:
            c.started = True
            c.ready = c.spec.readinessProbe is None
        elif not ok and kind in ("liveness", "startup"):
            what = "liveness" if kind == "liveness" else "startup"
            self.agent.events.pod(self.pod, "Killing",
                                  f"Container {c.spec.name} failed {what} probe, will be restarted",
                                  container=c.spec.name)
            asyncio.create_task(self._stop_container(c, self._grace(c, kind)))
        self._publish()

    def _grace(self, c: ContainerRun, kind: str) -> float:
        probe = c.spec.livenessProbe if kind == "liveness" else c.spec.startupProbe
        if probe is not None and probe.terminationGracePeriodSeconds is not None:
            return probe.terminationGracePeriodSeconds
        g = self.pod.spec.terminationGracePeriodSeconds
        return 30 if g is None else g

    async def _stop_container(self, c: ContainerRun, grace: float) -> None:
        h = c.handle
        if h is None:
            return
        c.stopping = True
        try:
            self.agent.runtime.terminate(h)
            deadline = time.monotonic() + grace
            while c.handle is h and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if c.handle is h:
                log.info("pod %s/%s: container %s outlived its grace period: SIGKILL", self.rec.namespace,
                         self.rec.name, c.spec.name)
                self.agent.runtime.kill(h)
                for _ in range(100):
                    if c.handle is not h:
                        break
                    await asyncio.sleep(0.05)
        finally:
            c.stopping = False
            self.wake()

    def _exited(self, c: ContainerRun, h: Handle, code: int, known: bool) -> None:
        if c.handle is not h:
            return
        for w in c.probes:
            w.stop()
        c.probes.clear()
        c.handle = None
        c.ready = False
        c.started = False
        finished = now_rfc3339()
        reason = "Completed" if code == 0 else "Error" if known else "Unknown"
        c.rec.last = {"exitCode": code, "reason": reason, "startedAt": c.rec.started_at,
                      "finishedAt": finished, "containerID": c.rec.container_id}
        c.rec.pid = c.rec.pid_start = c.rec.init_pid = 0
        delay, c.backoff = restart_backoff(c.backoff, time.monotonic() - c.ran_since, self.agent.backoff_base)
        c.restart_at = time.monotonic() + delay
        if self._should_start(c) and not self.terminating:
            if delay > 0:
                self.agent.events.pod(self.pod, "BackOff",
                                      f"Back-off restarting failed container {c.spec.name} in pod "
                                      f"{self.rec.name}_{self.rec.namespace}({self.uid})",
                                      warning=True, container=c.spec.name)
        self.agent.save(self.rec)
        self.wake()
        self._publish()

    # -- termination -----------------------------------------------------------------
    async def _terminate(self) -> None:
        a = self.agent
        md = self.pod.metadata
        grace = md.deletionGracePeriodSeconds
        if grace is None:
            grace = self.pod.spec.terminationGracePeriodSeconds
        if grace is None:
            grace = 30
        if self.gone:  # deleted outright: nobody waits for us, but be fair to the processes
            grace = min(grace, 2)
        running = [c for c in self.containers.values() if c.handle is not None]
        log.info("pod %s/%s: %s; stopping %s (grace %ss)", self.rec.namespace, self.rec.name,
                 "deleted" if self.gone else "deletion requested",
                 ", ".join(c.spec.name for c in running) or "nothing", grace)
        for c in running:
            a.events.pod(self.pod, "Killing", f"Stopping container {c.spec.name}", container=c.spec.name)
        await asyncio.gather(*(self._stop_container(c, grace) for c in running))
        for c in self.containers.values():
            if c.handle is not None:  # did not even die of SIGKILL in time: never leave it
                a.runtime.kill(c.handle)
                a.runtime.unwatch(c.handle)
                c.handle = None
        await self.teardown()
        log.info("pod %s/%s: stopped, network and state released", self.rec.namespace, self.rec.name)
        await self._remove_api_object()

    async def _remove_api_object(self) -> None:
        """The last step of a graceful deletion: delete the object with grace 0, as kubelet
        does once the containers are gone. Retried until it is done or a watch says the
        object went, so an API server away at this moment does not leave the pod
        Terminating for good (the watch resumes with no event that would bring us back)."""
        md = self.pod.metadata
        delay = 0.5
        while not self.gone and self._still_listed():
            try:
                await self.agent.client.delete(Pod, md.name, namespace=md.namespace, grace_period=0)
                return
            except ApiError as err:
                if err.status.code == 404:
                    return
                log.warning("deleting pod %s/%s: %s", md.namespace, md.name, err)
            except Exception as err:
                log.warning("deleting pod %s/%s: %s: %s", md.namespace, md.name, type(err).__name__, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _still_listed(self) -> bool:
        """The pod object by this name is still ours (not replaced under the same name)."""
        pods = self.agent.pods
        if pods is None:
            return True
        cur = pods.get(self.rec.name, self.rec.namespace)
        return cur is not None and cur.metadata.uid == self.uid

    async def teardown(self) -> None:
        """Release the network and the state of this pod."""
        a = self.agent
        if self.rec.netns or self.rec.veth:
            try:
                await a.network.teardown_pod(self.rec.netns, self.rec.veth)
            except Exception as err:
                log.warning("pod %s/%s: network teardown: %s", self.rec.namespace, self.rec.name, err)
        if not self.rec.host_network:
            a.ipam.release(self.rec.ip, self.uid)
        a.state.remove(self.uid)
        a.status.forget(self.uid)

    # -- status ------------------------------------------------------------------------
    def container_status(self, c: ContainerRun) -> dict:
        spec = c.spec
        st: dict[str, Any] = {"name": spec.name, "image": spec.image or "", "imageID": "",
                              "ready": c.ready, "restartCount": c.rec.restart_count,
                              "started": c.handle is not None and c.started}
        if c.handle is not None:
            st["state"] = {"running": {"startedAt": c.rec.started_at}}
            st["containerID"] = c.rec.container_id
        elif c.rec.last is not None and not self._should_start(c):
            st["state"] = {"terminated": dict(c.rec.last)}
            st["containerID"] = c.rec.container_id
        elif c.rec.last is not None and c.restart_at > time.monotonic():
            back = int(min(MAX_BACKOFF, max(c.backoff / 2, self.agent.backoff_base)))
            st["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                       f"back-off {_dur(back)} restarting failed container={spec.name} "
                                       f"pod={self.rec.name}_{self.rec.namespace}({self.uid})"}}
        elif not c.init and self.init_containers and not self.initialized:
            st["state"] = {"waiting": {"reason": "PodInitializing"}}
        else:
            reason, message = c.waiting
            w = {"reason": reason}
            if message:
                w["message"] = message
            st["state"] = {"waiting": w}
        if c.rec.last is not None and "terminated" not in st["state"]:
            st["lastState"] = {"terminated": dict(c.rec.last)}
        else:
            st["lastState"] = {}
        return st

    def status(self) -> dict:
        statuses = [self.container_status(c) for c in self.app_containers]
        init_statuses = [self.container_status(c) for c in self.init_containers]
        policy = self.pod.spec.restartPolicy or "Always"
        pending_init = [c.spec.name for c in self.init_containers if not self._init_done(c)]
        if not pending_init:
            phase = pod_phase(policy, statuses)
        elif policy == "Never" and any(c.rec.last and c.handle is None for c in self.init_containers
                                       if c.spec.name in pending_init):
            phase = "Failed"  # an init container failed and will not be retried
        else:
            phase = "Pending"
        a = self.agent
        st: dict[str, Any] = {
            "phase": phase,
            "conditions": self.conditions.compute(statuses, phase, self.sandbox_ready, pending_init),
            "hostIP": a.node_ip, "hostIPs": [{"ip": a.node_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        }
        if init_statuses:
            st["initContainerStatuses"] = init_statuses
        if self.rec.ip and (self.sandbox_ready or self.rec.host_network):
            st["podIP"] = self.rec.ip
            st["podIPs"] = [{"ip": self.rec.ip}]
        # Status goes out as a JSON merge patch, where an absent key keeps the stored
        # value: a message that no longer holds is sent as null to remove it.
        st["message"] = self.sandbox_error if self.sandbox_error and not self.sandbox_ready else None
        return st

    def _publish(self) -> None:
        if self.terminating:
            return
        self.agent.status.set(self.uid, self.rec.namespace, self.rec.name, self.status())

    # -- logs ---------------------------------------------------------------------------
    def log_file(self, container: str, previous: bool):
        """The log of the latest run of a container, or of the run before it; None if none."""
        c = self.containers.get(container)
        if c is None:
            return None
        rc = c.rec.restart_count  # runs are numbered by the restartCount they started with
        if previous:
            if rc == 0:
                return None
            rc -= 1
        return self.agent.state.log_path(self.uid, container, rc)

    def is_running(self, container: str) -> bool:
        c = self.containers.get(container)
        return c is not None and c.handle is not None


def _ts(value: Any) -> str:
    if isinstance(value, str):
        return value
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else now_rfc3339()


def _dur(seconds: int) -> str:
    m, s = divmod(seconds, 60)
    return f"{m}m{s}s" if m else f"{s}s"
