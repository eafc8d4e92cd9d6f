"""Which proxy data plane `kubesvc up` asks for, and why (pure decisions plus kernel probes).

The seed's rule: ipvs when the kernel has IPVS, otherwise iptables, saying which
and why. Without the privilege to change the kernel's network state (not root,
or root with CAP_NET_ADMIN dropped) only the userspace relay can work, and it can
then serve NodePorts only: that limit is said out loud, not discovered later.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

CAP_NET_ADMIN = 12

# What a run without privileges cannot do, printed by `up` and `status`.
UNPRIVILEGED_LIMITS = (
    "no ClusterIPs: 10.96.x.x addresses need kernel rules (root); use NodePorts on the node IP",
    "no pod networks: only pods with hostNetwork: true run (others stay Pending with the reason)",
    "cluster DNS is not at 10.96.0.10:53: it listens on the node IP, port {dns_port} "
    "(dig -p {dns_port} @NODE_IP ...)",
)


@dataclass
class ProxyModeChoice:
    """The mode to ask the proxy for, the reason, and what this mode cannot do here."""

    requested: str
    mode: str
    why: str
    limits: list[str] = field(default_factory=list)


def privileged() -> bool:
    """True when this process may change network state (CAP_NET_ADMIN), as root normally can."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def kernel_has_ipvs(proc: Path = Path("/proc"), modules: Path = Path("/lib/modules")) -> tuple[bool, str]:
    """IPVS loaded (/proc/net/ip_vs) or loadable (ip_vs in the running kernel's modules)."""
    if (proc / "net" / "ip_vs").exists():
        return True, "the kernel has IPVS (/proc/net/ip_vs exists)"
    release = platform.release()
    mod_dir = modules / release
    for listing in ("modules.builtin", "modules.dep"):
        try:
            text = (mod_dir / listing).read_text()
        except OSError:
            continue
        if "/ip_vs.ko" in text:
            return True, f"the kernel can load IPVS (ip_vs in {mod_dir / listing})"
    if not mod_dir.exists():
        return False, f"the kernel has no IPVS (/proc/net/ip_vs missing, no modules for kernel {release})"
    return False, f"the kernel has no IPVS (/proc/net/ip_vs missing, no ip_vs module for kernel {release})"


def choose(requested: str, is_privileged: bool, ipvs: tuple[bool, str], dns_port: int = 53) -> ProxyModeChoice:
    """Decide the proxy mode for `up --proxy-mode requested`; raises ValueError when impossible."""
    if not is_privileged:
        limits = [text.format(dns_port=dns_port) for text in UNPRIVILEGED_LIMITS]
        if requested in ("auto", "userspace"):
            return ProxyModeChoice(requested, "userspace",
                                   "not root (no CAP_NET_ADMIN): only the userspace relay works without "
                                   "kernel rules", limits)
        raise ValueError(f"--proxy-mode={requested} needs root (it programs the kernel); "
                         f"run as root or use --proxy-mode=userspace")
    if requested != "auto":
        return ProxyModeChoice(requested, requested, f"--proxy-mode={requested}")
    has_ipvs, reason = ipvs
    if has_ipvs:
        return ProxyModeChoice(requested, "ipvs", f"auto: {reason}")
    return ProxyModeChoice(requested, "iptables", f"auto: {reason}, so iptables")
