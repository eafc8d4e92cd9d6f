"""The agent's state directory: what must survive an agent restart (and a reboot).

Kubelet keeps this in the container runtime; kubesvc has no runtime daemon, so the
agent writes it itself, one JSON file per pod, each written atomically:

    <state-dir>/boot_id                  the kernel boot the records below belong to
    <state-dir>/ipam/<ip>                pod UID holding that address (host-local IPAM)
    <state-dir>/pods/<uid>/pod.json      PodRecord: netns, IP, veth, containers' pids
    <state-dir>/pods/<uid>/resolv.conf, hosts
    <state-dir>/pods/<uid>/<container>/<restartCount>.log, .exit

A new agent reads these to adopt pods whose processes still run instead of
killing them; after a reboot (boot_id changed) it knows their processes are gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rotate_log(path: Path, limit: int) -> bool:
    """Move a log over `limit` bytes to `<name>.1` and empty it in place; True if rotated.

    Containers write their logs with O_APPEND, so truncating in place is safe: the
    next write lands at the new end. One old file is kept; `kubectl logs` shows
    only the current one, as with kubelet's rotation.
    """
    try:
        if path.stat().st_size <= limit:
            return False
        with open(path, "rb") as src, open(path.with_name(path.name + ".1"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.truncate(path, 0)
        return True
    except OSError:
        return False


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass
class ContainerRecord:
    """One run of one container: enough to find its processes and exit code again."""

    name: str
    restart_count: int = 0
    container_id: str = ""
    pid: int = 0              # the process the agent spawned (the shim's outer process)
    pid_start: int = 0        # its start time in clock ticks, against pid reuse
    init_pid: int = 0         # host pid of the pid-namespace init (signals go here)
    started_at: str = ""      # RFC 3339
    # The last finished run, for lastState and `kubectl logs --previous`.
    last: dict | None = None


@dataclass
class PodRecord:
    """A pod this node runs, as persisted across agent restarts."""

    uid: str
    namespace: str
    name: str
    host_network: bool = False
    netns: str = ""
    ip: str = ""
    veth: str = ""
    containers: dict[str, ContainerRecord] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> "PodRecord":
        raw = json.loads(text)
        conts = {k: ContainerRecord(**v) for k, v in raw.pop("containers", {}).items()}
        return cls(**raw, containers=conts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


class StateDir:
    """Reads and writes pod records and per-pod files under one directory."""

    def __init__(self, root: Path):
        self.root = root
        self.pods_dir = root / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._saved: dict[str, str] = {}

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def container_dir(self, uid: str, container: str) -> Path:
        d = self.pod_dir(uid) / container
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log_path(self, uid: str, container: str, restart_count: int) -> Path:
        return self.container_dir(uid, container) / f"{restart_count}.log"

    def exit_path(self, uid: str, container: str, restart_count: int) -> Path:
        return self.container_dir(uid, container) / f"{restart_count}.exit"

    def save(self, rec: PodRecord) -> None:
        text = rec.to_json()
        if self._saved.get(rec.uid) == text:
            return  # a rename per sync pass is the agent's largest cost under a pod burst
        d = self.pod_dir(rec.uid)
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "pod.json", text)
        self._saved[rec.uid] = text

    def load_all(self) -> list[PodRecord]:
        out = []
        for d in sorted(self.pods_dir.iterdir()):
            try:
                out.append(PodRecord.from_json((d / "pod.json").read_text()))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def remove(self, uid: str) -> None:
        self._saved.pop(uid, None)
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)

    def check_boot(self) -> bool:
        """True when the records were written during this boot (processes may still run)."""
        path = self.root / "boot_id"
        current = boot_id()
        try:
            same = path.read_text().strip() == current
        except OSError:
            same = False
        write_atomic(path, current)
        return same


class IPAM:
    """Host-local address allocation from the node's podCIDR, one file per address.

    The gateway (first address) belongs to the bridge; pods get the rest, in order,
    and an address stays with its pod UID until released, across agent restarts.
    """

    def __init__(self, root: Path):
        self.dir = root / "ipam"
        self.dir.mkdir(parents=True, exist_ok=True)

    def owner(self, ip: str) -> str | None:
        try:
            return (self.dir / ip).read_text().strip()
        except OSError:
            return None

    def allocate(self, cidr: str, uid: str) -> str:
        net = ipaddress.ip_network(cidr, strict=False)
        hosts = net.hosts()
        next(hosts)  # the gateway
        for addr in hosts:
            path = self.dir / str(addr)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if self.owner(str(addr)) == uid:
                    return str(addr)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(uid)
            return str(addr)
        raise RuntimeError(f"no free address left in the pod CIDR {cidr}")

    def release(self, ip: str, uid: str) -> None:
        if ip and self.owner(ip) == uid:
            try:
                (self.dir / ip).unlink()
            except FileNotFoundError:
                pass

    def held(self) -> dict[str, str]:
        return {p.name: p.read_text().strip() for p in self.dir.iterdir() if not p.name.startswith(".")}
