"""Readiness, liveness and startup probes: one worker per probe per container run.

As kubelet's prober: the first probe after initialDelaySeconds, then one every
periodSeconds, each allowed timeoutSeconds; the result flips only after
failureThreshold consecutive failures or successThreshold consecutive successes.
Liveness and readiness wait until the startup probe (if any) has succeeded.
Probes run from the node, as kubelet's do: httpGet and tcpSocket against the pod
IP, exec inside the container's namespaces.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

log = logging.getLogger(__name__)


@dataclass
class ProbeResult:
    ok: bool
    message: str = ""


def _port(port: Any, container: Any) -> int:
    """An int, a numeric string, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.ports or []:
        if p.name == port:
            return p.containerPort
    raise ValueError(f"port {port!r} is not a port of container {container.name!r}")


def _errtext(err: OSError) -> str:
    """As Go prints a syscall error: "connection refused", "no route to host"."""
    return os.strerror(err.errno).lower() if err.errno else str(err)


async def run_probe(probe: Any, container: Any, pod_ip: str, exec_prefix: list[str] | None,
                    env: dict[str, str]) -> ProbeResult:
    """One probe attempt; never raises."""
    timeout = probe.timeoutSeconds or 1
    try:
        if probe.httpGet is not None:
            return await _http(probe.httpGet, container, pod_ip, timeout)
        if probe.tcpSocket is not None:
            host = probe.tcpSocket.host or pod_ip
            port = _port(probe.tcpSocket.port, container)
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except asyncio.TimeoutError:
                return ProbeResult(False, f"dial tcp {host}:{port}: i/o timeout")
            except OSError as err:
                return ProbeResult(False, f"dial tcp {host}:{port}: connect: {_errtext(err)}")
            w.close()
            return ProbeResult(True)
        if probe.exec is not None:
            if exec_prefix is None:
                return ProbeResult(False, "the container's processes are not there to run the command in")
            return await _exec(list(probe.exec.command or []), exec_prefix, env, timeout)
        if getattr(probe, "grpc", None) is not None:
            return ProbeResult(False, "grpc probes are not supported by kubesvc")
    except ValueError as err:
        return ProbeResult(False, str(err))
    return ProbeResult(False, "probe has no handler")


async def _http(get: Any, container: Any, pod_ip: str, timeout: float) -> ProbeResult:
    scheme = (get.scheme or "HTTP").lower()
    host = get.host or pod_ip
    port = _port(get.port, container)
    path = get.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"User-Agent": "kube-probe/1.30", "Accept": "*/*"}
    for h in get.httpHeaders or []:
        headers[h.name] = h.value
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.get(url, headers=headers, ssl=False, allow_redirects=True) as r:
                body = (await r.content.read(10240)).decode(errors="replace")
                if 200 <= r.status < 400:
                    return ProbeResult(True)
                return ProbeResult(False, f"HTTP probe failed with statuscode: {r.status}"
                                   + (f"\n{body.strip()[:200]}" if body.strip() else ""))
    except asyncio.TimeoutError:
        return ProbeResult(False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded '
                                  f'while awaiting headers)')
    except aiohttp.ClientConnectorError as err:
        return ProbeResult(False, f'Get "{url}": dial tcp {host}:{port}: connect: '
                                  f'{_errtext(err.os_error) if err.os_error else err}')
    except aiohttp.ClientError as err:
        return ProbeResult(False, f'Get "{url}": {err}')


async def _exec(cmd: list[str], prefix: list[str], env: dict[str, str], timeout: float) -> ProbeResult:
    if not cmd:
        return ProbeResult(False, "exec probe has no command")
    try:
        p = await asyncio.create_subprocess_exec(*prefix, *cmd, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 env=env, start_new_session=True)
    except OSError as err:
        return ProbeResult(False, str(err))
    try:
        out, _ = await asyncio.wait_for(p.communicate(), timeout)
    except asyncio.TimeoutError:
        p.kill()
        await p.wait()
        return ProbeResult(False, f"command timed out after {timeout}s")
    if p.returncode == 0:
        return ProbeResult(True)
    text = out.decode(errors="replace").strip()
    return ProbeResult(False, f"command {cmd!r} exited with {p.returncode}" + (f": {text[:200]}" if text else ""))


class ProbeWorker:
    """Runs one probe of one container run and reports result changes."""

    def __init__(self, kind: str, probe: Any, container: Any, *, pod_ip: str,
                 exec_prefix: Callable[[], list[str] | None] | list[str], env: dict[str, str],
                 gate: Callable[[], bool], on_result: Callable[[str, bool, str, bool], None]):
        self.kind = kind  # "readiness" | "liveness" | "startup"
        self.probe = probe
        self.container = container
        self.pod_ip = pod_ip
        self.exec_prefix = exec_prefix
        self.env = env
        self.gate = gate  # False while the probe must wait (startup not yet succeeded)
        self.on_result = on_result
        self.result: bool | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"probe-{self.kind}-{self.container.name}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        p = self.probe
        period = p.periodSeconds or 10
        failure_threshold = p.failureThreshold or 3
        success_threshold = p.successThreshold or 1
        await asyncio.sleep(p.initialDelaySeconds or 0)
        last: bool | None = None
        count = 0
        while True:
            if self.gate():
                prefix = self.exec_prefix() if callable(self.exec_prefix) else self.exec_prefix
                if prefix is None and p.exec is not None:
                    await asyncio.sleep(0.05)  # the container's init is still being spawned
                    continue
                r = await run_probe(p, self.container, self.pod_ip, prefix, self.env)
                count = count + 1 if r.ok == last else 1
                last = r.ok
                threshold = success_threshold if r.ok else failure_threshold
                changed = count >= threshold and self.result != r.ok
                if changed:
                    self.result = r.ok
                if changed or not r.ok:
                    # Every failure is reported too: kubelet records each as an Unhealthy event.
                    self.on_result(self.kind, r.ok, r.message, changed)
                if self.kind == "startup" and self.result:
                    return  # the startup probe stops once it has succeeded
            await asyncio.sleep(period)
