"""Process and namespace plumbing the runtime and the network share.

- the mount namespace the agent must live in: `ip netns exec NODE kubesvc agent`
  puts the agent in a private copy of the machine's mount namespace, where the
  bind mounts that name pod network namespaces (/run/netns/*) would be seen by
  nobody else and vanish with the agent. The agent moves back into the machine's
  mount namespace first thing, so `ip netns` shows its pods and a restarted agent
  finds them.
- process identity across restarts: (pid, start time) so a reused pid is never
  taken for a container, and pidfds to learn of the exit of processes that are
  not our children (adopted after an agent restart).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal

log = logging.getLogger(__name__)

CLONE_NEWNS = 0x00020000


CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def is_root() -> bool:
    """Privileged enough for namespaces, mounts and netlink changes (CAP_SYS_ADMIN + CAP_NET_ADMIN).

    Capabilities rather than the uid: root in a container without them is as
    powerless as any user, and is treated as one.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
                return bool(caps & (1 << CAP_SYS_ADMIN)) and bool(caps & (1 << CAP_NET_ADMIN))
    except OSError:
        pass
    return os.geteuid() == 0


def _mnt_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def join_machine_mount_namespace() -> str:
    """Leave a private mount namespace (ip netns exec's) for the machine's; says what it did.

    The machine's namespace is pid 1's when we may read it, else our parent's (the
    shell or supervisor that ran `ip netns exec`). Must run before any thread starts.
    """
    if not is_root():
        return "not root: staying in this mount namespace"
    mine = _mnt_ns("self")
    for pid in (1, os.getppid()):
        other = _mnt_ns(pid)
        if other is None or other == mine:
            if other == mine:
                return "already in the machine's mount namespace"
            continue
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNS) != 0:
                err = ctypes.get_errno()
                return f"could not join the mount namespace of pid {pid}: {os.strerror(err)}"
        finally:
            os.close(fd)
        return f"joined the mount namespace of pid {pid} so pod network namespaces are visible machine-wide"
    return "no other mount namespace reachable"


def start_time(pid: int) -> int:
    """The process start time in clock ticks since boot (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    # comm may hold spaces and parentheses: fields start after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])


def alive(pid: int, pid_start: int) -> bool:
    """True when pid runs and is the same process (same start time), zombies excluded."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return False
    return pid_start == 0 or int(fields[19]) == pid_start


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def send(pid: int, sig: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None
