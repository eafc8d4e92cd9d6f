"""A throw-away cluster for agent tests: node namespaces, a real API server, real agents.

Two namespaces play node01/node02 (names carry the test token), linked by a veth
(192.168.<x>.1 and .2); the API server runs in the first. Each agent runs with
`ip netns exec <node> kubesvc agent`, so its pods' namespaces are named after the
node (and so after the token). close() kills the agents, every process in every
namespace the nodes' pods got, the namespaces, and the API server — also when a
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

from tests.lib.cluster import APIServer
from tests.lib.netns import Topology, sh


@dataclass
class Node:
    name: str
    netns: str
    ip: str
    pod_cidr: str
    state_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None


@dataclass
class AgentCluster:
    tmp: Path
    topo: Topology = field(default_factory=Topology)
    api: APIServer | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    subnet: int = field(default_factory=lambda: random.randint(10, 250))

    def setup(self, node_count: int = 2) -> "AgentCluster":
        names = [f"node{i:02d}" for i in range(1, node_count + 1)]
        nss = [self.topo.ns(n) for n in names]
        for i, (short, ns) in enumerate(zip(names, nss), start=1):
            self.nodes[short] = Node(name=f"{self.topo.token}-{short}", netns=ns,
                                     ip=f"192.168.{self.subnet}.{i}", pod_cidr=f"10.244.{i}.0/24",
                                     state_dir=self.tmp / f"agent-{short}", log_path=self.tmp / f"agent-{short}.log")
        if node_count >= 2:
            a, b = self.nodes["node01"], self.nodes["node02"]
            self.topo.veth(a.netns, f"{a.ip}/24", b.netns, f"{b.ip}/24")
        self.api = APIServer(self.tmp / "apiserver", netns=self.nodes["node01"].netns).start()
        return self

    def server_for(self, node: Node) -> str:
        host = "127.0.0.1" if node.netns == self.api.netns else self.nodes["node01"].ip
        return f"http://{host}:{self.api.port}"

    def start_agent(self, short: str, *extra: str, wait: bool = True, pod_cidr: bool = True) -> Node:
        node = self.nodes[short]
        log = open(node.log_path, "ab")
        cidr = ["--pod-cidr", node.pod_cidr] if pod_cidr else []
        node.proc = self.topo.popen(node.netns, [
            sys.executable, "-m", "kubesvc.cli", "agent", "--server", self.server_for(node),
            "--node-name", node.name, "--node-ip", node.ip, *cidr,
            "--state-dir", str(node.state_dir), "--lease-renew", "2", *extra],
            stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait(lambda: self.node_ready(node.name), 30, f"node {node.name} Ready")
        return node

    def kill_agent(self, short: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[short]
        if node.proc and node.proc.poll() is None:
            os.kill(node.proc.pid, sig)
            node.proc.wait(10)
        node.proc = None

    # -- reading the cluster --------------------------------------------------------------
    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.api.kubectl(*args, **kw)

    def get(self, kind: str, name: str, ns: str = "default") -> dict | None:
        p = self.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def node_ready(self, name: str) -> bool:
        node = self.get("node", name)
        conds = {c["type"]: c["status"] for c in (node or {}).get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True"

    def pod_netns(self, short: str) -> list[str]:
        prefix = self.nodes[short].name + "-"
        return [line.split()[0] for line in sh("ip netns list").stdout.splitlines()
                if line.startswith(prefix)]

    @staticmethod
    def wait(cond, timeout: float = 30, what: str = "condition", interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_pod(self, name: str, pred, timeout: float = 30, what: str = "") -> dict:
        def check():
            pod = self.get("pod", name)
            try:
                return pod if pod and pred(pod) else None
            except (KeyError, IndexError):  # status not written yet
                return None
        try:
            return self.wait(check, timeout, what or f"pod {name}")
        except AssertionError:
            raise AssertionError(f"pod {name}: timed out waiting for {what}; pod now:\n"
                                 + json.dumps((self.get('pod', name) or {}).get("status"), indent=1)
                                 + "\nagent logs:\n" + self.agent_logs())

    def agent_logs(self) -> str:
        out = []
        for n in self.nodes.values():
            if n.log_path.exists():
                lines = [l for l in n.log_path.read_text(errors="replace").splitlines() if "httpx" not in l]
                out.append(f"--- {n.name}\n" + "\n".join(lines[-40:]))
        return "\n".join(out)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    # -- cleanup ---------------------------------------------------------------------------
    def close(self) -> None:
        for short in list(self.nodes):
            try:
                self.kill_agent(short)
            except Exception:
                pass
        for short in self.nodes:
            for ns in self.pod_netns(short):
                for pid in sh(f"ip netns pids {ns}", check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                sh(f"ip netns del {ns}", check=False)
        self.topo.close()
        if self.api:
            self.api.stop()


def ready(pod: dict) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def web_pod(name: str, node: str, extra: str = "") -> str:
    """A pod answering /hostname.html with its own hostname, as the seed's myapp pods do."""
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: myapp}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 5
  containers:
  - name: myapp
    image: ikubernetes/myapp:v1
    command: [sh, -c, 'd=$(mktemp -d) && hostname > $d/hostname.html && cd $d && exec python3 -m http.server 80']
    ports: [{{containerPort: 80, name: http}}]
    readinessProbe: {{httpGet: {{path: /hostname.html, port: http}}, periodSeconds: 1}}
{extra}"""
