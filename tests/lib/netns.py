"""Throw-away network namespaces for tests: the only place cluster traffic may go.

A :class:`Topology` makes named namespaces (prefixed with a per-test token so
parallel runs never collide), links them with veth pairs or a bridge, and removes
everything, processes included, on close. None of its namespaces has a route
out of the machine.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
from dataclasses import dataclass, field


def sh(cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {p.stderr.strip()}")
    return p


@dataclass
class Topology:
    """Namespaces and links made for one test, removed by close()."""

    token: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def ns(self, short: str) -> str:
        """Create namespace `ks-<token>-<short>` with loopback up; returns its name."""
        name = f"ks{self.token}-{short}"
        sh(f"ip netns add {name}")
        self.namespaces.append(name)
        self.run(name, "ip link set lo up")
        return name

    def run(self, ns: str, cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return sh(f"ip netns exec {ns} {cmd}", check=check, **kw)

    def popen(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        """Start a long-running process in ns; it is killed on close()."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def veth(self, ns_a: str, addr_a: str, ns_b: str, addr_b: str) -> tuple[str, str]:
        """A veth pair between two namespaces with CIDR addresses (e.g. 192.168.0.1/24)."""
        base = f"v{self.token}{secrets.token_hex(2)}"  # 11 chars, unique per pair
        a, b = base + "a", base + "b"
        sh(f"ip link add {a} netns {ns_a} type veth peer name {b} netns {ns_b}")
        self.run(ns_a, f"ip addr add {addr_a} dev {a}")
        self.run(ns_a, f"ip link set {a} up")
        self.run(ns_b, f"ip addr add {addr_b} dev {b}")
        self.run(ns_b, f"ip link set {b} up")
        return a, b

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        for name in reversed(self.namespaces):
            # Kill anything still inside, then remove the namespace (its links go with it).
            pids = sh(f"ip netns pids {shlex.quote(name)}", check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh(f"ip netns del {shlex.quote(name)}", check=False)
        self.namespaces.clear()

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
