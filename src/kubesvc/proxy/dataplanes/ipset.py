"""The ipsets kube-proxy's ipvs mode keeps, applied with `ipset restore` in one run.

Names, types and comments are kube-proxy's (pkg/proxy/ipvs/ipset.go), so that
``ipset list KUBE-CLUSTER-IP`` reads as on a kube-proxy node. Entries are written
as ``ipset save`` prints them (``10.96.0.1,tcp:443``), which lets a full sync
diff what the kernel holds against what it should hold.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class SetInfo:
    """One ipset: name, type, kube-proxy's comment for it."""

    name: str
    type: str
    comment: str

    @property
    def create(self) -> str:
        opts = "range 0-65535" if self.type == "bitmap:port" else "family inet hashsize 1024 maxelem 65536"
        return f"create {self.name} {self.type} {opts} -exist"


LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
EXTERNAL_IP = "KUBE-EXTERNAL-IP"
EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
LOAD_BALANCER = "KUBE-LOAD-BALANCER"
LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
IPVS_IPS = "KUBE-IPVS-IPS"

SETS: dict[str, SetInfo] = {s.name: s for s in (
    SetInfo(LOOP_BACK, "hash:ip,port,ip", "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    SetInfo(CLUSTER_IP, "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose"),
    SetInfo(EXTERNAL_IP, "hash:ip,port", "Kubernetes service external ip + port for masquerade and filter purpose"),
    SetInfo(EXTERNAL_IP_LOCAL, "hash:ip,port", "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER, "hash:ip,port", "Kubernetes service lb portal"),
    SetInfo(LOAD_BALANCER_LOCAL, "hash:ip,port",
            "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER_FW, "hash:ip,port",
            "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    SetInfo(LOAD_BALANCER_SOURCE_IP, "hash:ip,port,ip",
            "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    SetInfo(LOAD_BALANCER_SOURCE_CIDR, "hash:ip,port,net",
            "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    SetInfo(NODE_PORT_TCP, "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_TCP, "bitmap:port", "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_UDP, "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_UDP, "bitmap:port", "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_SCTP, "hash:ip,port",
            "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    SetInfo(NODE_PORT_LOCAL_SCTP, "hash:ip,port",
            "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    SetInfo(HEALTH_CHECK_NODE_PORT, "bitmap:port", "Kubernetes health check node port"),
    SetInfo(IPVS_IPS, "hash:ip", "Kubernetes service IPs assigned to kube-ipvs0"),
)}


def parse_save(text: str) -> dict[str, set[str]]:
    """`ipset save` output → entries of our sets (sets absent from the output are absent here)."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "create" and parts[1] in SETS:
            out.setdefault(parts[1], set())
        elif len(parts) >= 3 and parts[0] == "add" and parts[1] in SETS:
            out.setdefault(parts[1], set()).add(parts[2])
    return out


def render_restore(adds: dict[str, set[str]], dels: dict[str, set[str]], create: bool) -> str:
    """An `ipset restore` script: creates (idempotent), deletions, then additions."""
    lines = [s.create for s in SETS.values()] if create else []
    for name in sorted(dels):
        lines.extend(f"del {name} {e} -exist" for e in sorted(dels[name]))
    for name in sorted(adds):
        lines.extend(f"add {name} {e} -exist" for e in sorted(adds[name]))
    return "\n".join(lines) + "\n" if lines else ""


async def save() -> dict[str, set[str]]:
    proc = await asyncio.create_subprocess_exec("ipset", "save", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ipset save failed: {err.decode().strip()}")
    return parse_save(out.decode())


async def destroy_ours(present: set[str]) -> list[str]:
    """`ipset destroy` each of our sets in `present` (after the rules using them are gone);
    returns the ones the kernel refused, with why."""
    failed = []
    for name in sorted(present & SETS.keys()):
        proc = await asyncio.create_subprocess_exec("ipset", "destroy", name, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            failed.append(f"{name}: {err.decode().strip()}")
    return failed


async def restore(script: str) -> None:
    if not script:
        return
    proc = await asyncio.create_subprocess_exec("ipset", "restore", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"ipset restore failed: {err.decode().strip()[:2000]}")
