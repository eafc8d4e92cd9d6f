"""A node namespace with pods behind a bridge and a client namespace beside it.

    client (192.168.50.2) ──veth── node (192.168.50.1; br0 10.244.1.1/24) ──br0── pod-i (10.244.1.1x)

Every address lives only inside these namespaces; none has a route out of the
machine. Pods run tests/integration/proxy/podserver.py answering their own name.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lib.netns import Topology, sh

HERE = Path(__file__).parent
NODE_IP = "192.168.50.1"
CLIENT_IP = "192.168.50.2"
BRIDGE_IP = "10.244.1.1"


@dataclass
class Pod:
    name: str
    ns: str
    ip: str
    node: str = "node1"


@dataclass
class ProxyLab:
    """Namespaces for one test module; close() removes everything."""

    npods: int = 3
    topo: Topology = field(default_factory=Topology)
    pods: list[Pod] = field(default_factory=list)
    node: str = ""
    client: str = ""
    extra_routes: tuple[str, ...] = ("10.96.0.0/12", "203.0.113.0/24", "198.51.100.0/24")

    def start(self) -> "ProxyLab":
        t = self.topo
        self.node = t.ns("node")
        self.client = t.ns("client")
        t.veth(self.node, f"{NODE_IP}/24", self.client, f"{CLIENT_IP}/24")
        t.run(self.node, "sysctl -qw net.ipv4.ip_forward=1")
        t.run(self.node, "ip link add br0 type bridge")
        t.run(self.node, f"ip addr add {BRIDGE_IP}/24 dev br0")
        t.run(self.node, "ip link set br0 up")
        # Pod-to-service-to-pod on one bridge needs bridged traffic to see conntrack (br_netfilter),
        # exactly as on a kube-proxy node.
        t.run(self.node, "sysctl -qw net.bridge.bridge-nf-call-iptables=1", check=False)
        # The node reaches service addresses through the bridge; the kernel DNATs them before routing.
        for cidr in self.extra_routes[:1]:
            t.run(self.node, f"ip route add {cidr} dev br0")
        # The client reaches externalIPs / LB IPs through the node, like a router would send them.
        for cidr in self.extra_routes[1:]:
            t.run(self.client, f"ip route add {cidr} via {NODE_IP}")
        for i in range(self.npods):
            self.add_pod(f"pod{i}")
        return self

    def add_pod(self, name: str, node: str = "node1") -> Pod:
        t = self.topo
        i = len(self.pods)
        ns = t.ns(name)
        ip = f"10.244.1.{10 + i}"
        host_if = f"veth{t.token}{i}"
        sh(f"ip link add {host_if} netns {self.node} type veth peer name eth0 netns {ns}")
        t.run(self.node, f"ip link set {host_if} master br0 up")
        # As the CNI bridge plugin's hairpinMode: a pod reaching itself through a service
        # is DNATed on the bridge and must be sent back out of the port it came in on.
        t.run(self.node, f"ip link set {host_if} type bridge_slave hairpin on")
        t.run(ns, f"ip addr add {ip}/24 dev eth0")
        t.run(ns, "ip link set eth0 up")
        t.run(ns, f"ip route add default via {BRIDGE_IP}")
        p = t.popen(ns, [sys.executable, str(HERE / "podserver.py"), name, "8080"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert p.stdout.readline().strip() == b"ready"
        pod = Pod(name, ns, ip, node)
        self.pods.append(pod)
        return pod

    def curl(self, ns: str, url: str, *args: str, timeout: float = 3) -> subprocess.CompletedProcess:
        return self.topo.run(ns, f"curl -s --max-time {timeout} {' '.join(args)} {url}", check=False)

    def names(self, ns: str, url: str, n: int) -> list[str]:
        """The answers of n fresh connections (each a new curl)."""
        out = self.topo.run(ns, "sh -c " + repr(f"for i in $(seq {n}); do curl -s --max-time 2 {url}; done"),
                            check=False).stdout
        return out.split()

    def close(self) -> None:
        self.topo.close()


def wait_for(pred, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# A UDP client in a pod: one source port all along (one conntrack entry), asking
# 10.96.10.14:53 every 0.1 s for argv[1] seconds, printing each answer or "-" when
# none came within argv[2] seconds. For the "UDP flow follows a moved endpoint" tests.
UDP_LOOP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40053))
s.settimeout(float(sys.argv[2]))
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    s.sendto(b"q", ("10.96.10.14", 53))
    try:
        print(s.recvfrom(100)[0].decode().strip(), flush=True)
    except socket.timeout:
        print("-", flush=True)
    time.sleep(0.1)
"""
