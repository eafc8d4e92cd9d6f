"""Probe handlers against real loopback servers and real commands."""

from __future__ import annotations

import asyncio

from aiohttp import web
from lightkube import codecs

from kubesvc.agent.probes import ProbeWorker, run_probe


def container(probe: dict) -> object:
    return codecs.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                             "spec": {"containers": [{"name": "c", "image": "x", "readinessProbe": probe,
                                                      "ports": [{"name": "web", "containerPort": 0}]}]}}
                            ).spec.containers[0]


async def serve(status: int) -> tuple[web.AppRunner, int]:
    app = web.Application()
    async def healthz(_):
        return web.Response(status=status, text="nope" if status >= 400 else "ok")
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def test_http_get_success_and_failure_messages():
    ok, port_ok = await serve(200)
    bad, port_bad = await serve(503)
    try:
        c = container({"httpGet": {"path": "/healthz", "port": port_ok}})
        assert (await run_probe(c.readinessProbe, c, "127.0.0.1", [], {})).ok
        c = container({"httpGet": {"path": "/healthz", "port": port_bad}})
        r = await run_probe(c.readinessProbe, c, "127.0.0.1", [], {})
        assert not r.ok and r.message.startswith("HTTP probe failed with statuscode: 503")
    finally:
        await ok.cleanup()
        await bad.cleanup()


async def test_tcp_refused_and_named_port():
    runner, port = await serve(200)
    try:
        c = container({"tcpSocket": {"port": "web"}})
        c.ports[0].containerPort = port
        assert (await run_probe(c.readinessProbe, c, "127.0.0.1", [], {})).ok
    finally:
        await runner.cleanup()
    r = await run_probe(c.readinessProbe, c, "127.0.0.1", [], {})
    assert not r.ok and "connection refused" in r.message.lower()


async def test_exec_and_timeout():
    c = container({"exec": {"command": ["sh", "-c", "exit 0"]}})
    assert (await run_probe(c.readinessProbe, c, "", [], {"PATH": "/usr/bin:/bin"})).ok
    c = container({"exec": {"command": ["sh", "-c", "echo sick; exit 1"]}})
    r = await run_probe(c.readinessProbe, c, "", [], {"PATH": "/usr/bin:/bin"})
    assert not r.ok and "sick" in r.message
    c = container({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1})
    r = await run_probe(c.readinessProbe, c, "", [], {"PATH": "/usr/bin:/bin"})
    assert not r.ok and "timed out" in r.message


async def test_worker_thresholds():
    flips: list[bool] = []
    c = container({"exec": {"command": ["sh", "-c", "test -e $F"]}, "periodSeconds": 1,
                   "failureThreshold": 2, "successThreshold": 1})
    c.readinessProbe.periodSeconds = 0.05  # fast for the test
    import tempfile, os
    flag = tempfile.mktemp()
    w = ProbeWorker("readiness", c.readinessProbe, c, pod_ip="", exec_prefix=[],
                    env={"PATH": "/usr/bin:/bin", "F": flag}, gate=lambda: True,
                    on_result=lambda k, ok, msg, changed: changed and flips.append(ok))
    w.start()
    try:
        # Waits until the flip, not a fixed time: a shared machine can take a second to
        # fork the two failing probes the threshold needs.
        await _until(lambda: flips, 10)
        assert flips == [False]
        open(flag, "w").close()
        await _until(lambda: len(flips) > 1, 10)
        assert flips == [False, True]
    finally:
        w.stop()
        if os.path.exists(flag):
            os.unlink(flag)


async def _until(pred, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
