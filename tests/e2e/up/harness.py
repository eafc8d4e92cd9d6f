"""`kubesvc up` in a throw-away namespace playing the node, with another playing an outside client.

The node namespace gets a veth to the client namespace (192.168.<x>.1 and .2) and
a default route via the client, as a real node has a gateway: that gives
10.96.x.x a route (the proxy's DNAT happens after routing), while anything
unanswered dies in the client namespace, which forwards nothing. Neither
namespace has a route out of the machine.

close() stops `up` with SIGINT (Ctrl-C), then kills whatever is left in the
namespaces and removes the pods' namespaces (named after the node), also when a
test failed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lib.cluster import kubectl_path
from tests.lib.netns import Topology, sh

MANIFESTS = Path(__file__).parent / "manifests"


def wait_for(cond, timeout: float = 30, what: str = "condition", interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class UpNode:
    """A node namespace running `kubesvc up`, and a client namespace linked to it."""

    tmp: Path
    topo: Topology = field(default_factory=Topology)
    subnet: int = field(default_factory=lambda: random.randint(10, 250))
    # argv prefix run inside the node namespace before `python -m kubesvc.cli` (e.g. setpriv)
    as_user: tuple[str, ...] = ()
    client: bool = True
    node_ip: str = ""
    proc: subprocess.Popen | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        self.node_name = f"node01-{self.topo.token}"
        self.data_dir = self.tmp / "kubesvc"
        self.node_ns = self.topo.ns("node")
        self.client_ns = None
        if self.client:
            self.client_ns = self.topo.ns("client")
            self.node_ip, self.client_ip = f"192.168.{self.subnet}.1", f"192.168.{self.subnet}.2"
            self.topo.veth(self.node_ns, f"{self.node_ip}/24", self.client_ns, f"{self.client_ip}/24")
            self.topo.run(self.node_ns, f"ip route add default via {self.client_ip}")
        else:
            self.node_ip = "127.0.0.1"

    # -- kubesvc up -----------------------------------------------------------------------
    @property
    def out_path(self) -> Path:
        return self.tmp / f"up-{self.runs}.out"

    def start(self, *extra: str, timeout: float = 90) -> str:
        """Start `kubesvc up` and wait for its how-to-use block; returns what it printed."""
        self.runs += 1  # up makes the data dir itself (as the user it runs as)
        out = open(self.out_path, "wb")
        self.proc = self.topo.popen(self.node_ns, [
            *self.as_user, sys.executable, "-m", "kubesvc.cli", "up", "--data-dir", str(self.data_dir),
            "--node-name", self.node_name, "--node-ip", self.node_ip, *extra],
            stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "kubesvc is up" in self.output() or self.proc.poll() is not None, timeout,
                 "kubesvc up to finish starting")
        if self.proc.poll() is not None:
            raise AssertionError(f"kubesvc up exited {self.proc.returncode}:\n{self.output()}\n{self.logs()}")
        return self.output()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def logs(self, lines: int = 30) -> str:
        out = []
        for f in sorted((self.data_dir / "logs").glob("*.log")):
            text = [l for l in f.read_text(errors="replace").splitlines() if "HTTP Request" not in l]
            out.append(f"--- {f.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to `up` (ip netns exec execs it, so the pid is up's); its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        # setpriv and `ip netns exec` exec their command: the pid is up's own.
        os.kill(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout)
        return self.proc.returncode

    def state(self) -> dict:
        return json.loads((self.data_dir / "up.json").read_text())

    # -- commands inside the namespaces -------------------------------------------------------
    def node(self, cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.topo.run(self.node_ns, cmd, check=check, timeout=timeout)

    def from_client(self, cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.topo.run(self.client_ns, cmd, check=check, timeout=timeout)

    def kubesvc(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run(["ip", "netns", "exec", self.node_ns, *self.as_user, sys.executable, "-m",
                            "kubesvc.cli", *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubesvc {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
        return p

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.data_dir / "kubeconfig")}
        p = subprocess.run(["ip", "netns", "exec", self.node_ns, kubectl_path(), *args], input=input,
                           capture_output=True, text=True, env=env, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
        return p

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def ready_pods(self, selector: str) -> list[dict]:
        def ready(p: dict) -> bool:
            conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions") or []}
            return conds.get("Ready") == "True" and not p["metadata"].get("deletionTimestamp")
        return [p for p in self.get("pods", "-l", selector)["items"] if ready(p)]

    def endpoint_ips(self, name: str, ns: str = "default") -> set[str]:
        ep = json.loads(self.kubectl("get", "endpoints", name, "-n", ns, "-o", "json", check=False).stdout or "{}")
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}

    def node_pids(self) -> list[str]:
        """Processes left in the node namespace (asked from outside it, so `ip` itself is not one)."""
        return sh(f"ip netns pids {self.node_ns}", check=False).stdout.split()

    # -- cleanup ---------------------------------------------------------------------------------
    def pod_namespaces(self) -> list[str]:
        prefix = self.node_name + "-"
        return [line.split()[0] for line in sh("ip netns list", check=False).stdout.splitlines()
                if line.startswith(prefix)]

    def close(self) -> None:
        try:
            self.interrupt(60)
        except Exception:
            pass
        for ns in self.pod_namespaces():
            for pid in sh(f"ip netns pids {ns}", check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh(f"ip netns del {ns}", check=False)
        self.topo.close()
