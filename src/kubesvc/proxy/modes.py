"""Which data plane `kubesvc proxy` runs: the seed's "ipvs if the kernel has it, else iptables".

kube-proxy checks IPVS before choosing it (CanUseIPVSProxier): the kernel must
answer on the ``IPVS`` generic-netlink family (loading ``ip_vs`` if needed), the
scheduler's module must be there, and the ``ipset`` tool must exist. When one of
those fails we fall back to iptables and say which one failed, in one line; with
``--no-fallback`` the same reason is an error instead.

Everything that touches the system is behind :func:`probe_ipvs` so the choice
itself (:func:`choose_mode`) is a pure function the tests drive directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

MODES = ("auto", "userspace", "iptables", "ipvs", "nftables")


class ModeError(Exception):
    """The requested data plane cannot run here and falling back was refused."""


@dataclass(frozen=True)
class ModeChoice:
    """The data plane to run and, in words, why."""

    mode: str
    reason: str
    fell_back: bool = False  # True when the user asked for something else


def _modprobe(module: str) -> str | None:
    """Load a kernel module; None on success, else why not (as the tool says)."""
    if os.path.isdir(f"/sys/module/{module}"):
        return None  # loaded, or built into the kernel
    if shutil.which("modprobe") is None:
        return f"module {module} is not loaded and modprobe is not installed"
    try:
        p = subprocess.run(["modprobe", "--", module], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"modprobe {module}: {err}"
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        return f"modprobe {module} failed: {msg[-1] if msg else f'exit {p.returncode}'}"
    return None


def _ipvs_family() -> str | None:
    """None when the kernel answers on the IPVS generic-netlink family, else the error."""
    from kubesvc.proxy.dataplanes.ipvs_netlink import ipvs_family_id
    try:
        ipvs_family_id()
        return None
    except Exception as err:  # NetlinkError(2, 'No such file or directory') when absent
        return f"generic netlink family IPVS not found ({err})"


def probe_ipvs(scheduler: str = "rr") -> tuple[bool, str]:
    """Can this kernel run the ipvs data plane? Returns (ok, reason naming what failed)."""
    if _ipvs_family() is not None:
        loaded = _modprobe("ip_vs")
        if loaded is not None:
            return False, f"IPVS is not available: {loaded}"
        missing = _ipvs_family()
        if missing is not None:
            return False, f"IPVS is not available: ip_vs loaded but {missing}"
    sched = _modprobe(f"ip_vs_{scheduler}")
    if sched is not None:
        return False, f"IPVS scheduler {scheduler!r} is not available: {sched}"
    if shutil.which("ipset") is None:
        return False, "IPVS is available but the ipset tool is not installed (ipvs mode needs it)"
    return True, f"the kernel answers on the IPVS netlink family, scheduler {scheduler} loaded"


def choose_mode(mode: str, *, is_root: bool, no_fallback: bool = False, scheduler: str = "rr",
                probe: Callable[[str], tuple[bool, str]] = probe_ipvs,
                built: tuple[str, ...] = ("userspace", "iptables", "ipvs")) -> ModeChoice:
    """The seed's rule: ipvs when the kernel has it, otherwise iptables; userspace without root.

    `built` lists the data planes this build has (a plane not built yet falls back to
    iptables, saying so). Raises ModeError when `no_fallback` forbids a fallback.
    """
    if mode == "auto":
        if not is_root:
            return ModeChoice("userspace", "not root: userspace relays NodePorts (ClusterIPs need root)")
        ok, why = probe(scheduler)
        if ok:
            return ModeChoice("ipvs", f"--mode=auto: {why}")
        return ModeChoice("iptables", f"--mode=auto: {why}; using iptables")
    if mode == "ipvs":
        if not is_root:
            why = "not root: the ipvs data plane programs the kernel"
        else:
            ok, why = probe(scheduler)
            if ok:
                return ModeChoice("ipvs", f"--mode=ipvs: {why}")
        if no_fallback:
            raise ModeError(f"--mode=ipvs: {why} (and --no-fallback was given)")
        return ModeChoice("iptables", f"--mode=ipvs: {why}; falling back to iptables", fell_back=True)
    if mode not in built:
        if no_fallback:
            raise ModeError(f"--mode={mode}: the {mode} data plane cannot run here (it needs root and its "
                            "tools) (and --no-fallback was given)")
        return ModeChoice("iptables", f"--mode={mode}: the {mode} data plane cannot run here (it needs root "
                                      "and its tools); falling back to iptables", fell_back=True)
    return ModeChoice(mode, f"--mode={mode}")
