"""An agent without privileges: hostNetwork pods run, other pods say why they cannot.

The agent runs in the machine's namespaces with every capability dropped
(setpriv), talks to an API server on loopback and listens on loopback only; it
cannot and does not touch the kernel's network state.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from tests.lib.cluster import free_port

pytestmark = pytest.mark.root  # dropping capabilities needs them first


def _pids(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _wait(cond, timeout=30, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_unprivileged_agent_runs_host_network_pods_only(apiserver, tmp_path):
    token = secrets.token_hex(3)
    node = f"unpriv-{token}"
    marker = f"kubesvc-unpriv-{token}"
    port = free_port()
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
         sys.executable, "-m", "kubesvc.cli", "agent", "--server", apiserver.url, "--node-name", node,
         "--node-ip", "127.0.0.1", "--address", "127.0.0.1", "--listen-port", str(port),
         "--state-dir", str(tmp_path / "state"), "--kill-pods-on-exit"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: " Ready " in apiserver.kubectl("get", "node", node, check=False).stdout, 30, "node Ready")
        apiserver.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: hostnet-{token}}}
spec:
  nodeName: {node}
  hostNetwork: true
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo hello from the host network; exec sleep 3600', {marker}]
---
apiVersion: v1
kind: Pod
metadata: {{name: podnet-{token}}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
""")
        _wait(lambda: "1/1     Running" in apiserver.kubectl("get", "pod", f"hostnet-{token}").stdout, 30,
              "hostNetwork pod Running")
        assert apiserver.kubectl("get", "pod", f"hostnet-{token}", "-o",
                                 "jsonpath={.status.podIP}").stdout == "127.0.0.1"
        assert apiserver.kubectl("logs", f"hostnet-{token}").stdout == "hello from the host network\n"
        _wait(lambda: "FailedCreatePodSandBox" in apiserver.kubectl(
            "get", "events", "--field-selector", f"involvedObject.name=podnet-{token}").stdout, 20, "event")
        out = apiserver.kubectl("get", "pod", f"podnet-{token}").stdout
        assert "ContainerCreating" in out, out
        msg = apiserver.kubectl("get", "pod", f"podnet-{token}", "-o",
                                "jsonpath={.status.containerStatuses[0].state.waiting.message}").stdout
        assert "not running as root: only hostNetwork pods can run" in msg
        # --kill-pods-on-exit: stopping the agent stops its pods.
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
        assert not _pids(marker)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        for pid in _pids(marker):
            os.kill(pid, signal.SIGKILL)
        apiserver.kubectl("delete", "pod", f"hostnet-{token}", f"podnet-{token}", "--grace-period=0", "--force",
                          check=False)
