"""Containers as processes: start, signal, and learn of the exit of each container run.

A container is its `command`+`args` run on the node's filesystem (images are
recorded, never pulled) under a small /bin/sh shim, started through util-linux:

    nsenter --net=/run/netns/<pod>          the pod's network namespace
      unshare --uts --mount --propagation slave --pid --fork --kill-child --mount-proc
        /bin/sh <state-dir>/shim.sh CMD...  pid 1 of the container's pid namespace:
          hostname, bind-mount the pod's resolv.conf and hosts, cd workingDir,
          run the command as its child, forward SIGTERM/SIGINT to it, and write
          its exit code to a file when it ends

Why this shape: the pid namespace makes "no process survives its container"
true (when its init dies the kernel kills the rest; killing the outer unshare
kills its child via --kill-child); the shim is pid 1 *with* a SIGTERM handler,
so graceful termination reaches a command that has none (python -m http.server);
the exit-code file and (pid, start time) records let an agent restarted after a
kill -9 adopt running containers — not its children any more — and still learn
how they end (pidfd). Mount propagation is `slave` so a pod network namespace
unmounted on the node is not kept alive by another pod's copy of /run/netns.

Without root there are no namespaces: hostNetwork containers run as plain
processes in their own session, killed as a process group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kubesvc.agent import procs

log = logging.getLogger(__name__)

SHIM = r"""
h=$KUBESVC_SHIM_HOSTNAME r=$KUBESVC_SHIM_RESOLV hs=$KUBESVC_SHIM_HOSTS wd=$KUBESVC_SHIM_WORKDIR ex=$KUBESVC_SHIM_EXIT
unset KUBESVC_SHIM_HOSTNAME KUBESVC_SHIM_RESOLV KUBESVC_SHIM_HOSTS KUBESVC_SHIM_WORKDIR KUBESVC_SHIM_EXIT
fail() { echo "kubesvc: $1" >&2; echo 128 > "$ex"; exit 128; }
if [ -n "$h" ]; then echo "$h" > /proc/sys/kernel/hostname || fail "cannot set hostname $h"; fi
if [ -n "$r" ]; then mount --bind "$r" /etc/resolv.conf || fail "cannot mount resolv.conf"; fi
if [ -n "$hs" ]; then mount --bind "$hs" /etc/hosts || fail "cannot mount hosts"; fi
if [ -n "$wd" ]; then cd "$wd" || fail "workingDir $wd: no such directory"; fi
trap 'kill -TERM $c 2>/dev/null' TERM
trap 'kill -INT $c 2>/dev/null' INT
"$@" &
c=$!
while :; do wait $c 2>/dev/null; s=$?; kill -0 $c 2>/dev/null || break; done
echo $s > "$ex"
exit $s
"""


@dataclass
class LaunchSpec:
    """Everything needed to start one container run."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    exit_path: Path
    working_dir: str = ""
    hostname: str = ""           # empty: keep the node's (hostNetwork)
    resolv_conf: str = ""        # empty: keep the node's
    hosts: str = ""
    netns: str = ""              # empty: the agent's own network namespace (hostNetwork)


@dataclass
class Handle:
    """A started (or adopted) container run."""

    pid: int
    pid_start: int
    init_pid: int = 0
    child: bool = False          # ours to reap (started by this agent, not adopted)
    exit_path: Path | None = None
    isolated: bool = True
    _fd: int | None = field(default=None, repr=False)


class Runtime:
    """Starts container runs and reports their ends; isolated (namespaces) only as root."""

    def __init__(self, isolated: bool, shim_path: Path):
        self.isolated = isolated
        # The shim lives in a file so `ps` shows `/bin/sh <shim> <command...>`.
        self.shim_path = shim_path
        shim_path.parent.mkdir(parents=True, exist_ok=True)
        shim_path.write_text(SHIM)

    def argv_for(self, spec: LaunchSpec) -> list[str]:
        shim = ["/bin/sh", str(self.shim_path), *spec.argv]
        if not self.isolated:
            return shim
        ns = ["unshare", "--mount", "--propagation", "slave", "--pid", "--fork", "--kill-child",
              "--mount-proc"]
        if spec.netns:
            ns.insert(1, "--uts")
            return ["nsenter", f"--net=/run/netns/{spec.netns}", "--", *ns, "--", *shim]
        return [*ns, "--", *shim]

    def start(self, spec: LaunchSpec) -> Handle:
        env = dict(spec.env)
        env.update(KUBESVC_SHIM_HOSTNAME=spec.hostname if self.isolated else "",
                   KUBESVC_SHIM_RESOLV=spec.resolv_conf if self.isolated else "",
                   KUBESVC_SHIM_HOSTS=spec.hosts if self.isolated else "",
                   KUBESVC_SHIM_WORKDIR=spec.working_dir, KUBESVC_SHIM_EXIT=str(spec.exit_path))
        try:
            spec.exit_path.unlink()
        except FileNotFoundError:
            pass
        argv = self.argv_for(spec)
        # posix_spawn (vfork) rather than fork: forking the agent's whole address space per
        # container was its largest cost when many pods start at once. Our fds are
        # close-on-exec (PEP 446), so the child gets exactly stdin, stdout and stderr.
        logfd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            pid = os.posix_spawnp(argv[0], argv, env, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, logfd, 1), (os.POSIX_SPAWN_DUP2, logfd, 2)])
        finally:
            os.close(logfd)
        return Handle(pid=pid, pid_start=procs.start_time(pid), child=True,
                      exit_path=spec.exit_path, isolated=self.isolated,
                      init_pid=0 if self.isolated else pid)

    async def find_init(self, h: Handle, timeout: float = 2.0) -> int:
        """The host pid of the container's pid-1 shim (the outer unshare's child)."""
        if h.init_pid:
            return h.init_pid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            kids = procs.children(h.pid)
            if kids:
                h.init_pid = kids[0]
                return h.init_pid
            if not procs.alive(h.pid, h.pid_start):
                return 0
            await asyncio.sleep(0.01)
        return 0

    def adopt(self, pid: int, pid_start: int, init_pid: int, exit_path: Path) -> Handle | None:
        """A run started by an earlier agent, if it still runs."""
        if not procs.alive(pid, pid_start):
            return None
        return Handle(pid=pid, pid_start=pid_start, init_pid=init_pid, exit_path=exit_path,
                      isolated=self.isolated)

    def watch(self, h: Handle, on_exit: Callable[[int, bool], None]) -> None:
        """Call on_exit(exit_code, known) once, when the run ends (child or adopted)."""
        loop = asyncio.get_running_loop()
        fd = procs.pidfd_open(h.pid)
        if fd is None:  # already gone
            loop.call_soon(self._finish, h, on_exit)
            return
        h._fd = fd

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            h._fd = None
            self._finish(h, on_exit)

        loop.add_reader(fd, ready)

    def unwatch(self, h: Handle) -> None:
        if h._fd is not None:
            asyncio.get_running_loop().remove_reader(h._fd)
            os.close(h._fd)
            h._fd = None

    @staticmethod
    def _finish(h: Handle, on_exit: Callable[[int, bool], None]) -> None:
        rc = None
        if h.child:
            try:
                _, status = os.waitpid(h.pid, 0)
                rc = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                pass
        code = read_exit(h.exit_path) if h.exit_path else None
        if code is not None:
            on_exit(code, True)
        elif rc is not None:
            on_exit(128 - rc if rc < 0 else rc, True)
        else:
            on_exit(137, False)

    def init_pid(self, h: Handle) -> int:
        """The host pid of the container's pid-namespace init (found when first needed)."""
        if not h.init_pid:
            kids = procs.children(h.pid)
            h.init_pid = kids[0] if kids else 0
        return h.init_pid

    def terminate(self, h: Handle) -> None:
        """SIGTERM to the command (through the shim, which forwards it)."""
        procs.send(self.init_pid(h) or h.pid, signal.SIGTERM)

    def kill(self, h: Handle) -> None:
        """SIGKILL to everything in the container."""
        if self.isolated:
            procs.send(self.init_pid(h), signal.SIGKILL)  # pid-namespace init: the kernel kills the rest
            procs.send(h.pid, signal.SIGKILL)
        else:
            procs.kill_group(h.pid)

    def running(self, h: Handle) -> bool:
        return procs.alive(h.pid, h.pid_start)


def read_exit(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
