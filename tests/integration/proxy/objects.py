"""Services and EndpointSlices for the proxy tests, as the Kubernetes dicts kubectl would send."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def service(name: str, cluster_ip: str, port: int = 80, target: int = 8080, *, type: str = "ClusterIP",
            node_port: int | None = None, protocol: str = "TCP", external_ips: list[str] | None = None,
            lb_ip: str | None = None, affinity: int | None = None, etp: str | None = None,
            hc_port: int | None = None, ns: str = "default") -> dict:
    p = {"name": "http", "port": port, "targetPort": target, "protocol": protocol}
    if node_port:
        p["nodePort"] = node_port
    spec: dict = {"type": type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [p],
                  "selector": {"app": name}}
    if external_ips:
        spec["externalIPs"] = external_ips
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity}}
    if etp:
        spec["externalTrafficPolicy"] = etp
    if hc_port:
        spec["healthCheckNodePort"] = hc_port
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    if lb_ip:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    return svc


def endpoint_slice(service_name: str, pods: list, port: int = 8080, protocol: str = "TCP",
                   ns: str = "default", suffix: str = "abc") -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": f"{service_name}-{suffix}", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service_name}},
        "ports": [{"name": "http", "port": port, "protocol": protocol}],
        "endpoints": [{"addresses": [p.ip], "nodeName": p.node, "conditions": {"ready": True}}
                      for p in pods],
    }


class FileFeed:
    """The proxy's input through driver.py: set() the whole world, wait until it is programmed."""

    def __init__(self, path: Path):
        self.path = path
        self.generation = 0
        self.services: dict[str, dict] = {}
        self.slices: dict[str, dict] = {}
        Path(str(path) + ".done").unlink(missing_ok=True)

    def apply(self, *objs: dict) -> None:
        for o in objs:
            bucket = self.services if o["kind"] == "Service" else self.slices
            bucket[o["metadata"]["name"]] = o
        self.flush()

    def delete(self, kind: str, name: str) -> None:
        (self.services if kind == "Service" else self.slices).pop(name, None)
        self.flush()

    def flush(self, timeout: float = 20) -> float:
        """Write the state; returns seconds until the proxy said it is programmed."""
        self.generation += 1
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"generation": self.generation, "services": list(self.services.values()),
                                   "slices": list(self.slices.values())}))
        t0 = time.monotonic()
        os.replace(tmp, self.path)
        done = Path(str(self.path) + ".done")
        while time.monotonic() - t0 < timeout:
            try:
                if done.read_text().strip() == f"synced {self.generation}":
                    return time.monotonic() - t0
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise AssertionError(f"proxy did not program generation {self.generation} in {timeout}s")


def standard_world(pods: list) -> list[dict]:
    """The services every data plane's scenarios start from (the lab's three pods behind them):
    web (NodePort 30080 + externalIP), lb (LoadBalancer 198.51.100.7), sticky (ClientIP affinity),
    empty (no endpoints) and dns (UDP 53 to pod0)."""
    p0, p1, p2 = pods
    return [
        service("web", "10.96.10.10", type="NodePort", node_port=30080, external_ips=["203.0.113.10"]),
        endpoint_slice("web", [p0, p1, p2]),
        service("lb", "10.96.10.11", type="LoadBalancer", node_port=30081, lb_ip="198.51.100.7"),
        endpoint_slice("lb", [p0, p1, p2]),
        service("sticky", "10.96.10.12", type="NodePort", node_port=30082, affinity=600),
        endpoint_slice("sticky", [p0, p1, p2]),
        service("empty", "10.96.10.13", type="NodePort", node_port=30083),
        service("dns", "10.96.10.14", port=53, target=8080, protocol="UDP"),
        endpoint_slice("dns", [p0], protocol="UDP"),
    ]


# The seed's NodePort service, as the end-to-end tests apply it with kubectl.
SEED_SVC = """
apiVersion: v1
kind: Service
metadata:
  name: myapp
  namespace: default
spec:
  clusterIP: 10.99.99.99
  type: NodePort
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 30080
"""


def seed_slice(ips: list[str], name: str = "myapp-1", svc: str = "myapp") -> str:
    """A manual EndpointSlice for SEED_SVC (no controllers in these tests), as JSON for `kubectl apply -f -`."""
    return json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "nodeName": "node1", "conditions": {"ready": True}} for ip in ips],
    })
