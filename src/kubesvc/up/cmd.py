"""`kubesvc up`: the whole of kubesvc on this machine, in one supervised process tree.

Order matters as in a kubeadm cluster: the API server first (everything talks to
it), then the controllers, this node's agent and proxy, and finally cluster DNS,
which runs as hostNetwork pods of the kube-system/kube-dns service so that
`dig @10.96.0.10` goes through the proxy exactly as in a cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
from rich.console import Console

from kubesvc.up.supervisor import Component, Supervisor

console = Console(stderr=True)

PROXY_MODES = ["auto", "userspace", "iptables", "ipvs", "nftables"]


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/kubesvc")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kubesvc"


def detect_node_ip() -> str:
    """The address of the interface holding the default route, as kubelet picks it."""
    try:
        routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"],
                                           capture_output=True, text=True, check=True).stdout or "[]")
        for route in routes:
            if route.get("prefsrc"):
                return route["prefsrc"]
            dev = route.get("dev")
            if dev:
                addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev],
                                                  capture_output=True, text=True, check=True).stdout)
                for link in addrs:
                    for a in link.get("addr_info", []):
                        return a["local"]
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return "127.0.0.1"


def kubesvc_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubesvc.cli", *args]


def dns_deployment(kubeconfig: Path, node_ip: str) -> dict:
    """kube-dns as hostNetwork pods behind the kube-system/kube-dns service."""
    command = kubesvc_argv("dns", "--kubeconfig", str(kubeconfig), "--listen", f"{node_ip}:53",
                           "--health-listen", f"{node_ip}:8080", "--ready-listen", f"{node_ip}:8181",
                           "--metrics-listen", f"{node_ip}:9153")
    labels = {"k8s-app": "kube-dns"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "coredns", "image": "kubesvc/dns",
                        "command": command,
                        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                          "initialDelaySeconds": 10, "periodSeconds": 10},
                    }],
                },
            },
        },
    }


async def http_ok(url: str) -> bool:
    import aiohttp
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as s:
            async with s.get(url) as r:
                return r.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


@click.command("up")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State and logs (default /var/lib/kubesvc as root, else ~/.local/share/kubesvc).")
@click.option("--proxy-mode", type=click.Choice(PROXY_MODES), default="auto", show_default=True)
@click.option("--node-name", default=None, help="This node's name (default: the hostname).")
@click.option("--node-ip", default=None, help="This node's address (default: the default route's).")
@click.option("--lb-pool", default=None, help="Addresses for LoadBalancer services (CIDR or first-last, comma separated).")
@click.option("--listen", default="0.0.0.0:6443", show_default=True, help="API server address.")
def command(data_dir: Path | None, proxy_mode: str, node_name: str | None, node_ip: str | None,
            lb_pool: str | None, listen: str) -> None:
    """Run the API server, controllers, node agent, proxy and cluster DNS on this machine."""
    data_dir = (data_dir or default_data_dir()).resolve()
    node_name = node_name or socket.gethostname().split(".")[0].lower()
    node_ip = node_ip or detect_node_ip()
    try:
        asyncio.run(_up(data_dir, proxy_mode, node_name, node_ip, lb_pool, listen))
    except KeyboardInterrupt:
        pass


async def _up(data_dir: Path, proxy_mode: str, node_name: str, node_ip: str,
              lb_pool: str | None, listen: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    kubeconfig = data_dir / "kubeconfig"
    host, _, port = listen.rpartition(":")
    api_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    server = f"http://{api_host}:{port}"

    def report(kind: str, comp: Component, msg: str) -> None:
        style = "red" if kind in ("crashed", "killed") else "yellow"
        console.print(f"[{style}]{comp.name}[/] {msg} (log: {comp.log_path})")

    sup = Supervisor(on_event=report)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    if not os.access(str(data_dir), os.W_OK):
        raise click.ClickException(f"cannot write to {data_dir}")
    if port_in_use(api_host, int(port)):
        raise click.ClickException(f"something already listens on {api_host}:{port}; is kubesvc up already running?")

    steps = [
        ("apiserver", kubesvc_argv("apiserver", "--data-dir", str(data_dir / "apiserver"), "--listen", listen,
                                   "--advertise-address", node_ip),
         lambda: http_ok(server + "/readyz")),
        ("controllers", kubesvc_argv("controllers", "--kubeconfig", str(kubeconfig),
                                     *(["--lb-pool", lb_pool] if lb_pool else [])), None),
        ("agent", kubesvc_argv("agent", "--kubeconfig", str(kubeconfig), "--node-name", node_name,
                               "--node-ip", node_ip, "--state-dir", str(data_dir / "agent")), None),
        ("proxy", kubesvc_argv("proxy", "--kubeconfig", str(kubeconfig), "--mode", proxy_mode,
                               "--node-name", node_name, "--node-ip", node_ip), None),
    ]
    try:
        with console.status("starting kubesvc") as status:
            for name, argv, ready in steps:
                status.update(f"starting {name}")
                await sup.start(Component(name, argv, logs / f"{name}.log", ready=ready))
                if name == "apiserver":
                    kubeconfig.write_text(subprocess.run(
                        kubesvc_argv("kubeconfig", "--server", server),
                        check=True, capture_output=True, text=True).stdout)
                    kubeconfig.chmod(0o600)
                console.print(f"[green]✓[/] {name}")
            status.update("starting cluster DNS (kube-system/coredns)")
            await _apply(kubeconfig, dns_deployment(kubeconfig, node_ip))
            console.print("[green]✓[/] cluster DNS deployment applied (kube-system/coredns)")
        console.print(
            f"\nkubesvc is up on node [bold]{node_name}[/] ({node_ip}), proxy mode {proxy_mode}.\n"
            f"  export KUBECONFIG={kubeconfig}\n"
            f"  kubectl get nodes,svc -A\n"
            f"Logs: {logs}/  ·  Ctrl-C stops everything, pods included; the next `kubesvc up` brings the stored world back.")
        await stop.wait()
    finally:
        console.print("stopping kubesvc ...")
        await sup.stop()


async def _apply(kubeconfig: Path, obj: dict) -> None:
    """Server-side apply through the API, as `kubectl apply --server-side` would."""
    from lightkube import codecs
    from kubesvc.client import make_client

    client = make_client(kubeconfig=str(kubeconfig), field_manager="kubesvc-up")
    try:
        await client.apply(codecs.from_dict(obj), force=True)
    finally:
        await client.close()
