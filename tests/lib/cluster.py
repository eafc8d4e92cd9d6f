"""Run a real kubesvc API server for a test and drive it with the real kubectl."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class APIServer:
    """A `kubesvc apiserver` process on a loopback port with its own data dir."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    # Run inside this network namespace (a test's "node"): the server listens on
    # `host` there, and kubectl/readiness checks run there too via `ip netns exec`.
    netns: str | None = None
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self, timeout: float = 20.0) -> "APIServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "apiserver.log", "ab")
        listen = "0.0.0.0" if self.netns else self.host
        self.proc = subprocess.Popen(
            self._wrap([sys.executable, "-m", "kubesvc.cli", "apiserver", "--data-dir", str(self.data_dir),
                        "--listen", f"{listen}:{self.port}", *self.extra_args]),
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited {self.proc.returncode}: "
                                   + (self.data_dir / "apiserver.log").read_text()[-3000:])
            if self._ready():
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("apiserver did not become ready")
        out = subprocess.run([sys.executable, "-m", "kubesvc.cli", "kubeconfig", "--server", self.url],
                             check=True, capture_output=True, text=True).stdout
        self.kubeconfig.write_text(out)
        return self

    def _ready(self) -> bool:
        if self.netns:
            return subprocess.run(self._wrap(["curl", "-sf", "-o", "/dev/null", self.url + "/readyz"]),
                                  capture_output=True).returncode == 0
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, sig_kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if sig_kill else self.proc.terminate)()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, sig_kill: bool = False) -> "APIServer":
        self.stop(sig_kill)
        return self.start()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the real kubectl against this server; check=True raises with its stderr."""
        full_env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **(env or {})}
        p = subprocess.run(self._wrap([kubectl_path(), *args]), input=input, capture_output=True, text=True,
                           env=full_env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
        return p


def kubectl_path() -> str:
    path = shutil.which("kubectl")
    if not path:
        raise RuntimeError("kubectl is not on PATH")
    return path
