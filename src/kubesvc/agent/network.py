"""The pod network on one node: a bridge CNI, as the reference `bridge` plugin lays it out.

Node side (once): bridge `cni0` holding the first address of the node's podCIDR,
ip_forward and br_netfilter on (so service rules see bridged pod-to-pod traffic),
pod traffic leaving the cluster CIDR masqueraded, forwarding of cluster traffic
accepted, and one route per other node: its podCIDR via its InternalIP.

Pod side: one named network namespace per pod (so `ip netns exec` works for
debugging), a veth whose node end is a port of the bridge (hairpin on, so a pod
reaches itself through a service) and whose pod end is `eth0` with the pod IP,
loopback up, default route via the bridge.

All netlink work goes through pyroute2 on a few worker threads (netlink calls
block, and namespace switches are per thread); the iptables rules go through
iptables-restore, as kube-proxy writes its own.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import ipaddress
import logging
import os
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

BRIDGE = "cni0"
NETNS_DIR = Path("/run/netns")
ROUTE_PROTO = 111  # marks the routes to other nodes' pod CIDRs as ours
MASQ_CHAIN = "KUBESVC-POD-MASQ"
FORWARD_CHAIN = "KUBESVC-FORWARD"


def veth_name(uid: str) -> str:
    """The node end of a pod's veth: `veth` + 8 hex digits (IFNAMSIZ is 16)."""
    return "veth" + hashlib.sha1(uid.encode()).hexdigest()[:8]


def netns_name(prefix: str, namespace: str, name: str, uid: str) -> str:
    """`<prefix>-<namespace>-<pod>-<uid8>`: readable in `ip netns`, unique per pod and node."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{prefix}-{namespace}-{name}")[:180]
    return f"{base}-{uid[:8]}"


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def in_netns(name: str):
    """Run the calling thread in network namespace `name` for the block.

    pyroute2's own netns support forks a child per socket; a forked copy of an
    asyncio process shares the loop's signal wake-up fd, so a signal to that child
    looks like a SIGTERM to the agent. A thread's setns has no such side effect.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(target)
        os.close(own)


def _ip(*args: str) -> None:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")


def netns_exists(name: str) -> bool:
    return bool(name) and (NETNS_DIR / name).exists() and os.path.ismount(NETNS_DIR / name)


def _sysctl(path: str, value: str) -> bool:
    try:
        Path("/proc/sys", path).write_text(value)
        return True
    except OSError:
        return False


class PodNetwork:
    """Bridge, per-pod namespaces and veths, masquerade, and routes to other nodes."""

    def __init__(self, cluster_cidr: str, netns_prefix: str):
        self.cluster_cidr = cluster_cidr
        self.netns_prefix = netns_prefix
        self.pod_cidr: str | None = None
        self.gateway: str | None = None
        self.prefixlen = 24
        # Pods are set up in parallel (each thread switches its own namespace); node-wide
        # changes (bridge, rules, routes) take the lock.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="podnet")
        self._node_lock = threading.Lock()
        self._routes: dict[str, str] = {}

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- node ------------------------------------------------------------------
    async def setup_node(self, pod_cidr: str) -> list[str]:
        """Bridge, sysctls and masquerade for pod_cidr; returns warnings (nothing fatal)."""
        net = ipaddress.ip_network(pod_cidr, strict=False)
        self.pod_cidr, self.prefixlen = str(net), net.prefixlen
        self.gateway = str(next(net.hosts()))
        return await self._call(self._setup_node)

    def _setup_node(self) -> list[str]:
        with self._node_lock:
            return self._setup_node_locked()

    def _setup_node_locked(self) -> list[str]:
        warnings: list[str] = []
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=BRIDGE)
            if not idx:
                ipr.link("add", ifname=BRIDGE, kind="bridge")
                idx = ipr.link_lookup(ifname=BRIDGE)
            br = idx[0]
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=br, family=2)}
            for addr, plen in have - {(self.gateway, self.prefixlen)}:
                ipr.addr("del", index=br, address=addr, prefixlen=plen)
            if (self.gateway, self.prefixlen) not in have:
                ipr.addr("add", index=br, address=self.gateway, prefixlen=self.prefixlen)
            ipr.link("set", index=br, state="up")
        if not _sysctl("net/ipv4/ip_forward", "1"):
            warnings.append("could not turn on net.ipv4.ip_forward")
        if not Path("/proc/sys/net/bridge").exists():
            subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
        if not _sysctl("net/bridge/bridge-nf-call-iptables", "1"):
            warnings.append("br_netfilter is not available: service rules will not see pod-to-pod "
                            "traffic on the same bridge")
        _sysctl("net/bridge/bridge-nf-call-ip6tables", "1")
        warnings += self._iptables()
        return warnings

    def _iptables(self) -> list[str]:
        rules = (
            "*nat\n"
            f":{MASQ_CHAIN} - [0:0]\n"
            f"-A {MASQ_CHAIN} -d {self.cluster_cidr} -m comment --comment \"pod to pod: no NAT\" -j RETURN\n"
            f"-A {MASQ_CHAIN} -d 224.0.0.0/4 -m comment --comment \"multicast: no NAT\" -j RETURN\n"
            f"-A {MASQ_CHAIN} -m comment --comment \"pod traffic leaving the cluster CIDR\" -j MASQUERADE\n"
            "COMMIT\n"
            "*filter\n"
            f":{FORWARD_CHAIN} - [0:0]\n"
            f"-A {FORWARD_CHAIN} -s {self.cluster_cidr} -m comment --comment \"pod traffic\" -j ACCEPT\n"
            f"-A {FORWARD_CHAIN} -d {self.cluster_cidr} -m comment --comment \"pod traffic\" -j ACCEPT\n"
            "COMMIT\n"
        )
        try:
            p = subprocess.run(["iptables-restore", "-w", "5", "--noflush"], input=rules, text=True,
                               capture_output=True)
        except FileNotFoundError:
            return ["iptables-restore not found: pod traffic leaving the cluster is not masqueraded"]
        if p.returncode != 0:
            return [f"iptables-restore failed: {p.stderr.strip()}"]
        jumps = [("nat", "POSTROUTING", ["-s", self.pod_cidr, "-m", "comment", "--comment",
                                          "kubesvc: masquerade pods", "-j", MASQ_CHAIN]),
                 ("filter", "FORWARD", ["-m", "comment", "--comment", "kubesvc: pod forwarding",
                                        "-j", FORWARD_CHAIN])]
        for table, chain, spec in jumps:
            if subprocess.run(["iptables", "-w", "5", "-t", table, "-C", chain, *spec],
                              capture_output=True).returncode != 0:
                subprocess.run(["iptables", "-w", "5", "-t", table, "-I", chain, "1", *spec],
                               capture_output=True)
        return []

    async def sync_routes(self, peers: dict[str, str]) -> None:
        """Make the routes to other nodes' pod CIDRs exactly {podCIDR: InternalIP}."""
        if peers != self._routes:
            await self._call(self._sync_routes, dict(peers))

    def _sync_routes(self, peers: dict[str, str]) -> None:
        with self._node_lock, IPRoute() as ipr:
            for r in ipr.get_routes(family=2, proto=ROUTE_PROTO):
                dst = f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                if peers.get(dst) != r.get_attr("RTA_GATEWAY"):
                    try:
                        ipr.route("del", dst=dst, proto=ROUTE_PROTO)
                    except NetlinkError:
                        pass
            for dst, via in peers.items():
                try:
                    ipr.route("replace", dst=dst, gateway=via, proto=ROUTE_PROTO)
                except NetlinkError as err:
                    log.warning("route %s via %s: %s", dst, via, err)
        self._routes = peers

    # -- pods ------------------------------------------------------------------
    async def setup_pod(self, name: str, veth: str, ip: str) -> None:
        """Namespace `name` with eth0=ip (prefix of the pod CIDR), veth into the bridge; idempotent."""
        await self._call(self._setup_pod, name, veth, ip)

    def _setup_pod(self, name: str, veth: str, ip: str) -> None:
        if not netns_exists(name):
            if (NETNS_DIR / name).exists():  # a stale mountpoint after a reboot
                (NETNS_DIR / name).unlink()
            _ip("netns", "add", name)  # iproute2 also makes /run/netns a shared mount
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=veth):
                with in_netns(name), IPRoute() as pod:
                    if pod.link_lookup(ifname="eth0"):
                        pod.link("del", index=pod.link_lookup(ifname="eth0")[0])
                ipr.link("add", ifname=veth, kind="veth",
                         peer={"ifname": "eth0", "net_ns_fd": str(NETNS_DIR / name)})
            v = ipr.link_lookup(ifname=veth)[0]
            br = ipr.link_lookup(ifname=BRIDGE)[0]
            ipr.link("set", index=v, master=br, state="up")
            ipr.brport("set", index=v, mode=1)  # hairpin: a pod reaches itself through a service
        with in_netns(name), IPRoute() as pod:
            lo = pod.link_lookup(ifname="lo")[0]
            pod.link("set", index=lo, state="up")
            eth = pod.link_lookup(ifname="eth0")[0]
            have = {a.get_attr("IFA_ADDRESS") for a in pod.get_addr(index=eth, family=2)}
            if ip not in have:
                pod.addr("add", index=eth, address=ip, prefixlen=self.prefixlen)
            pod.link("set", index=eth, state="up")
            pod.route("replace", dst="0.0.0.0/0", gateway=self.gateway)

    async def teardown_pod(self, name: str, veth: str) -> None:
        await self._call(self._teardown_pod, name, veth)

    def _teardown_pod(self, name: str, veth: str) -> None:
        # The node end first: a namespace kept alive by a stray reference must not keep a veth.
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=veth) if veth else []
            if idx:
                try:
                    ipr.link("del", index=idx[0])
                except NetlinkError:
                    pass
        if name and (NETNS_DIR / name).exists():
            try:
                _ip("netns", "del", name)
            except RuntimeError as err:
                log.warning("removing netns %s: %s", name, err)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
