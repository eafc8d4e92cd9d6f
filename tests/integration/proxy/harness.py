"""The proxy processes the data-plane tests run in the lab's node namespace (all data planes share them).

DriverProxy: the real tracker + sync + data plane fed from a file (driver.py);
fed_lab(): a lab with such a proxy programmed with objects.standard_world;
kubesvc_proxy(): the real `kubesvc proxy` command against an API server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from tests.integration.proxy.lab import ProxyLab
from tests.integration.proxy.objects import FileFeed, standard_world

ROOT = Path(__file__).resolve().parents[3]


class DriverProxy:
    """driver.py for one data plane (MODE) in the node namespace; its stderr goes to STATE.log."""

    def __init__(self, lab: ProxyLab, mode: str, state: Path, env: dict | None = None):
        self.lab, self.mode, self.state, self.env = lab, mode, state, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        extra = {"env": {**os.environ, **self.env}} if self.env else {}
        self.proc = self.lab.topo.popen(self.lab.node, [sys.executable, "-m", "tests.integration.proxy.driver",
                                                        self.mode, str(self.state)], cwd=ROOT,
                                        stderr=open(str(self.state) + ".log", "ab"), **extra)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        return Path(str(self.state) + ".log").read_text()


def start_driver(lab: ProxyLab, mode: str, state: Path, feed_cls: type[FileFeed] = FileFeed,
                 env: dict | None = None) -> tuple[FileFeed, DriverProxy]:
    """An empty world in STATE and a started DriverProxy reading it."""
    feed = feed_cls(state)
    proxy = DriverProxy(lab, mode, state, env)
    state.write_text('{"generation": 0, "services": [], "slices": []}')
    proxy.start()
    return feed, proxy


@contextlib.contextmanager
def fed_lab(mode: str, state: Path, feed_cls: type[FileFeed] = FileFeed) -> Iterator[tuple]:
    """(lab, feed, proxy) with standard_world programmed; on a failed start the proxy's log is printed."""
    lab = ProxyLab().start()
    try:
        feed, proxy = start_driver(lab, mode, state, feed_cls)
        try:
            feed.apply(*standard_world(lab.pods))
        except AssertionError:
            print(proxy.log()[-4000:], file=sys.stderr)
            raise
        yield lab, feed, proxy
    finally:
        lab.close()


def kubesvc_proxy(lab: ProxyLab, api_url: str, mode: str, log) -> subprocess.Popen:
    """`kubesvc proxy --mode MODE` in the node namespace against API_URL, with kube-proxy's health/metrics ports."""
    return lab.topo.popen(lab.node, [sys.executable, "-m", "kubesvc.cli", "proxy", "--server", api_url,
                                     "--mode", mode, "--node-name", "node1", "--min-sync-period", "100ms",
                                     "--healthz-bind-address", "127.0.0.1:10256",
                                     "--metrics-bind-address", "127.0.0.1:10249"],
                          stdout=log, stderr=subprocess.STDOUT)
