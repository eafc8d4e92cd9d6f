"""The record `kubesvc up` keeps in DATA/up.json: what runs, where, in which mode and why.

`kubesvc status` and `kubesvc explain` read it to find the API server, the proxy
mode and its reason, and each component's health endpoint, without asking the
user to repeat the flags given to `up`. It is rewritten whenever a component
starts, crashes or restarts, atomically (write + rename), so a reader never sees
half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "up.json"


@dataclass
class ComponentState:
    """One supervised component as `status` shows it."""

    name: str
    pid: int | None = None
    state: str = "starting"  # starting, running, crashed, stopped
    restarts: int = 0
    last_exit: int | None = None
    health: str | None = None  # URL answering 200 when healthy
    log: str = ""


@dataclass
class UpState:
    """Everything `up` decided and started."""

    pid: int
    data_dir: str
    node_name: str
    node_ip: str
    server: str
    kubeconfig: str
    proxy_requested: str
    proxy_mode: str
    proxy_why: str
    limits: list[str] = field(default_factory=list)
    dns_listen: str = ""
    cluster_dns: str = "10.96.0.10"
    started_at: float = 0.0
    components: list[ComponentState] = field(default_factory=list)

    def write(self, data_dir: Path) -> None:
        path = data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    @property
    def running(self) -> bool:
        """The `up` process that wrote this is alive."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, someone else's
            return True
        return True


def read(data_dir: Path) -> UpState | None:
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    comps = [ComponentState(**c) for c in raw.pop("components", [])]
    return UpState(**raw, components=comps)


def default_data_dir() -> Path:
    """/var/lib/kubesvc as root, else $XDG_DATA_HOME/kubesvc (~/.local/share/kubesvc)."""
    if os.geteuid() == 0:
        return Path("/var/lib/kubesvc")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kubesvc"


def find_data_dir() -> Path:
    """For readers (status, explain): the user's own data dir, else the machine's if `sudo kubesvc up` made it."""
    own = default_data_dir()
    machine = Path("/var/lib/kubesvc")
    if not (own / STATE_FILE).exists() and (machine / STATE_FILE).exists():
        return machine
    return own
