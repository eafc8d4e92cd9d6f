"""`kubesvc up`: the whole of kubesvc on this machine, in one supervised process tree.

Order matters as in a kubeadm cluster: the API server first (everything talks to
it), then the controllers, this node's agent and proxy, and finally cluster DNS,
which runs as hostNetwork pods of the kube-system/kube-dns service so that
`dig @10.96.0.10` goes through the proxy exactly as in a cluster.

Ctrl-C (or SIGTERM) stops everything in reverse order, the node's pods included
(the agent runs with --kill-pods-on-exit); the API objects stay in the store, so
the next `up` with the same data dir brings the same world back.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from kubesvc.up import modes
from kubesvc.up.state import ComponentState, UpState, default_data_dir
from kubesvc.up.supervisor import Component, Supervisor

console = Console(stderr=True, highlight=False, soft_wrap=True)

PROXY_MODES = ["auto", "userspace", "iptables", "ipvs", "nftables"]
# Where the components' health endpoints are (their defaults).
AGENT_PORT = 10250
PROXY_HEALTHZ = "127.0.0.1:10256"
PROXY_METRICS = "127.0.0.1:10249"
DNS_HEALTH_PORT, DNS_READY_PORT, DNS_METRICS_PORT = 8080, 8181, 9153
UNPRIVILEGED_DNS_PORT = 1053


def detect_node_ip() -> str:
    """The address of the interface holding the default route, as kubelet picks it."""
    try:
        routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"],
                                           capture_output=True, text=True, check=True).stdout or "[]")
        devs = [r["dev"] for r in routes if r.get("dev")]
        for route in routes:
            if route.get("prefsrc"):
                return route["prefsrc"]
        addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show"],
                                          capture_output=True, text=True, check=True).stdout or "[]")
        # The default route's device first, else the first global address (a node with no route out).
        for link in sorted(addrs, key=lambda l: l.get("ifname") not in devs):
            for a in link.get("addr_info", []):
                if a.get("scope") == "global":
                    return a["local"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        pass
    return "127.0.0.1"


def route_to_services(cluster_dns: str = "10.96.0.10") -> str | None:
    """None when this node routes the service CIDR; else a warning saying what to add.

    The proxy rewrites a ClusterIP after the kernel routed the packet, so the node
    itself (not its pods, which route via cni0) needs some route covering
    10.96.0.0/12 — a default route normally is one.
    """
    p = subprocess.run(["ip", "route", "get", cluster_dns], capture_output=True, text=True)
    if p.returncode == 0:
        return None
    return (f"this node has no route to the service CIDR ({p.stderr.strip() or 'no route'}): processes on "
            f"the node cannot reach ClusterIPs such as {cluster_dns} (pods can); a default route, or "
            f"`ip route add 10.96.0.0/12 dev <the node's interface>`, fixes it")


def kubesvc_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubesvc.cli", *args]


def dns_deployment(kubeconfig: Path, node_ip: str, dns_port: int) -> dict:
    """kube-dns as hostNetwork pods (label k8s-app=kube-dns) behind the kube-system/kube-dns service.

    The TTL is 5s, as CoreDNS's kubernetes plugin answers (the seed's dig shows 5).
    """
    command = kubesvc_argv("dns", "--kubeconfig", str(kubeconfig), "--listen", f"{node_ip}:{dns_port}",
                           "--ttl", "5",
                           "--health-listen", f"{node_ip}:{DNS_HEALTH_PORT}",
                           "--ready-listen", f"{node_ip}:{DNS_READY_PORT}",
                           "--metrics-listen", f"{node_ip}:{DNS_METRICS_PORT}")
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
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "coredns", "image": "kubesvc/dns",
                        "command": command,
                        "ports": [{"name": "dns", "containerPort": dns_port, "protocol": "UDP"},
                                  {"name": "dns-tcp", "containerPort": dns_port, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": DNS_METRICS_PORT, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": DNS_READY_PORT},
                                           "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": DNS_HEALTH_PORT},
                                          "initialDelaySeconds": 10, "periodSeconds": 10},
                    }],
                },
            },
        },
    }


async def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """(status, body) of a GET, (0, b"") when nothing answers."""
    import aiohttp
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.get(url) as r:
                return r.status, await r.read()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return 0, b""


async def http_ok(url: str) -> bool:
    return (await http_get(url))[0] == 200


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


async def node_ready(server: str, node_name: str, since: float) -> bool:
    """The node is Ready by a heartbeat of this run's agent (a stored Ready from the last run is stale)."""
    from datetime import datetime
    status, body = await http_get(f"{server}/api/v1/nodes/{node_name}")
    if status != 200:
        return False
    for c in (json.loads(body).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            beat = c.get("lastHeartbeatTime") or ""
            try:
                return datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() >= since - 1
            except ValueError:
                return False
    return False


async def dns_ready(server: str) -> bool:
    status, body = await http_get(f"{server}/api/v1/namespaces/kube-system/endpoints/kube-dns")
    if status != 200:
        return False
    return any(s.get("addresses") for s in json.loads(body).get("subsets") or [])


async def proxy_mode_running() -> str | None:
    """The data plane the proxy actually runs (kube-proxy's /proxyMode on the metrics port)."""
    status, body = await http_get(f"http://{PROXY_METRICS}/proxyMode")
    return body.decode().strip() if status == 200 else None


def proxy_log_reason(log_path: Path) -> str | None:
    """The proxy's own 'proxy mode: X (why)' line, for when it fell back from what up asked."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if "proxy mode:" in line:
            text = line.split("proxy mode:", 1)[1].strip()
            # "iptables (--mode=ipvs: why ...); node N" -> the why
            m = re.match(r"^\S+ \((.*)\); node \S+$", text)
            return m.group(1) if m else text
    return None


@click.command("up")
@click.option("--data-dir", envvar="KUBESVC_DATA_DIR", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store, kubeconfig, pod state and logs (default /var/lib/kubesvc as root, "
                   "else ~/.local/share/kubesvc).")
@click.option("--proxy-mode", type=click.Choice(PROXY_MODES), default="auto", show_default=True,
              help="Proxy data plane; auto: ipvs if the kernel has IPVS, else iptables; userspace when not root.")
@click.option("--node-name", default=None, help="This node's name (default: the hostname).")
@click.option("--node-ip", default=None, help="This node's address (default: the default route's).")
@click.option("--lb-pool", default=None,
              help="Addresses for LoadBalancer services (CIDR or first-last, comma separated).")
@click.option("--listen", default="0.0.0.0:6443", show_default=True, help="API server HOST:PORT.")
def command(data_dir: Path | None, proxy_mode: str, node_name: str | None, node_ip: str | None,
            lb_pool: str | None, listen: str) -> None:
    """Run the API server, controllers, node agent, proxy and cluster DNS on this machine."""
    data_dir = (data_dir or default_data_dir()).resolve()
    node_name = node_name or socket.gethostname().split(".")[0].lower()
    node_ip = node_ip or detect_node_ip()
    is_priv = modes.privileged()
    dns_port = 53 if is_priv else UNPRIVILEGED_DNS_PORT
    try:
        choice = modes.choose(proxy_mode, is_priv, modes.kernel_has_ipvs(), dns_port)
    except ValueError as err:
        raise click.ClickException(str(err))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.ClickException(f"cannot create {data_dir}: {err.strerror}")
    try:  # a real write: access(2) judges by the real uid and ignores capabilities
        probe = data_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise click.ClickException(f"cannot write to {data_dir}: {err.strerror}")
    host, _, port = listen.rpartition(":")
    api_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if port_in_use(api_host, int(port)):
        raise click.ClickException(f"something already listens on {api_host}:{port}; "
                                   f"is kubesvc up already running? (kubesvc status)")
    up = Up(data_dir, node_name, node_ip, lb_pool, listen, choice, dns_port)
    try:
        import uvloop
        uvloop.run(up.run())
    except KeyboardInterrupt:
        pass
    if up.failed:
        raise click.ClickException(up.failed)


class Up:
    """Starts the components in order, reports on them, and stops them all on a signal."""

    def __init__(self, data_dir: Path, node_name: str, node_ip: str, lb_pool: str | None, listen: str,
                 choice: modes.ProxyModeChoice, dns_port: int):
        self.data_dir, self.node_name, self.node_ip = data_dir, node_name, node_ip
        self.lb_pool, self.listen, self.choice, self.dns_port = lb_pool, listen, choice, dns_port
        self.logs = data_dir / "logs"
        self.kubeconfig = data_dir / "kubeconfig"
        host, _, port = listen.rpartition(":")
        self.server = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        self.failed: str | None = None
        self.state = UpState(pid=os.getpid(), data_dir=str(data_dir), node_name=node_name, node_ip=node_ip,
                             server=self.server, kubeconfig=str(self.kubeconfig),
                             proxy_requested=choice.requested, proxy_mode=choice.mode, proxy_why=choice.why,
                             limits=list(choice.limits), dns_listen=f"{node_ip}:{dns_port}",
                             started_at=time.time())

    # -- reporting -------------------------------------------------------------
    def _comp_state(self, name: str) -> ComponentState:
        for c in self.state.components:
            if c.name == name:
                return c
        c = ComponentState(name=name)
        self.state.components.append(c)
        return c

    def _on_event(self, kind: str, comp: Component, msg: str) -> None:
        cs = self._comp_state(comp.name)
        cs.pid = comp.proc.pid if comp.proc else None
        cs.restarts, cs.last_exit, cs.log = comp.restarts, comp.last_exit, str(comp.log_path)
        cs.state = {"started": "running", "restarted": "running", "crashed": "crashed",
                    "killed": "stopped"}.get(kind, cs.state)
        self.state.write(self.data_dir)
        if kind == "started":
            return
        if kind == "slow":
            console.print(f"[yellow]{comp.name}[/] {msg} (log: {comp.log_path})")
            return
        style = "red" if kind in ("crashed", "killed") else "yellow"
        console.print(f"[{style}]{comp.name}[/] {msg} (log: {comp.log_path})")

    # -- the steps ----------------------------------------------------------------
    def components(self) -> list[tuple[Component, str | None]]:
        """(component, health URL) in start order."""
        kc, nn, ip = str(self.kubeconfig), self.node_name, self.node_ip
        agent_health = f"http://127.0.0.1:{AGENT_PORT}/healthz"
        proxy_health = f"http://{PROXY_HEALTHZ}/healthz"
        server, since = self.server, time.time()
        return [
            (Component("apiserver", kubesvc_argv(
                "apiserver", "--data-dir", str(self.data_dir / "apiserver"), "--listen", self.listen,
                "--advertise-address", ip), self.logs / "apiserver.log",
                ready=lambda: http_ok(server + "/readyz")), server + "/readyz"),
            (Component("controllers", kubesvc_argv(
                "controllers", "--kubeconfig", kc, *(["--lb-pool", self.lb_pool] if self.lb_pool else [])),
                self.logs / "controllers.log"), None),
            # Pods get a grace period to stop (30s by default) before the agent kills them.
            (Component("agent", kubesvc_argv(
                "agent", "--kubeconfig", kc, "--node-name", nn, "--node-ip", ip,
                "--state-dir", str(self.data_dir / "agent"),
                "--kill-pods-on-exit"), self.logs / "agent.log",
                ready=lambda: node_ready(server, nn, since), stop_timeout=45.0), agent_health),
            (Component("proxy", kubesvc_argv(
                "proxy", "--kubeconfig", kc, "--mode", self.choice.mode, "--node-name", nn, "--node-ip", ip,
                "--healthz-bind-address", PROXY_HEALTHZ, "--metrics-bind-address", PROXY_METRICS),
                self.logs / "proxy.log", ready=lambda: http_ok(proxy_health)), proxy_health),
        ]

    async def run(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sup = Supervisor(on_event=self._on_event)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"kubesvc: proxy mode [bold]{self.choice.mode}[/] ({self.choice.why})")
        for limit in self.choice.limits:
            console.print(f"  [yellow]cannot[/]: {limit}")
        if not self.choice.limits and (warning := route_to_services()):
            console.print(f"  [yellow]warning[/]: {warning}")
        try:
            starting = asyncio.create_task(self._start_all(sup))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():  # Ctrl-C while starting
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            elif starting.exception() is not None:
                self.failed = str(starting.exception())
                return
            else:
                await stop.wait()
        finally:
            console.print("stopping kubesvc (pods, proxy, agent, controllers, API server) ...")
            await sup.stop()
            for c in self.state.components:
                c.state = "stopped"
            self.state.write(self.data_dir)
            console.print("kubesvc stopped; the stored objects stay in "
                          f"{self.data_dir / 'apiserver'} for the next `kubesvc up`.")

    async def _start_all(self, sup: Supervisor) -> None:
        """The API server first; then the spokes (API clients only, independent of each other) and the
        cluster DNS deployment all at once, each reported when ready: on a busy machine that is several
        seconds less than one after another."""
        t_start = time.monotonic()
        with console.status("starting kubesvc") as status:
            (api, api_health), *spokes = self.components()
            status.update("starting apiserver")
            self._comp_state(api.name).health = api_health
            await sup.start(api)
            self._write_kubeconfig()
            console.print(f"[green]✓[/] apiserver ({time.monotonic() - t_start:.1f}s)")
            status.update("starting controllers, agent, proxy and cluster DNS")
            for comp, health in spokes:
                self._comp_state(comp.name).health = health
            t0 = time.monotonic()

            async def spoke(comp: Component) -> None:
                await sup.start(comp)
                detail = await self._proxy_detail(comp) if comp.name == "proxy" else ""
                console.print(f"[green]✓[/] {comp.name} ({time.monotonic() - t0:.1f}s){detail}")

            try:  # a TaskGroup: one failing cancels the others
                async with asyncio.TaskGroup() as tg:
                    for c, _ in spokes:
                        tg.create_task(spoke(c))
                    tg.create_task(self._start_dns())
            except ExceptionGroup as group:
                raise group.exceptions[0] from None
        console.print(f"all up in {time.monotonic() - t_start:.1f}s")
        self.state.write(self.data_dir)
        console.print(
            f"\nkubesvc is up on node [bold]{self.node_name}[/] ({self.node_ip}), "
            f"proxy mode {self.state.proxy_mode}. Use kubectl with it:\n"
            f"  export KUBECONFIG={self.kubeconfig}\n"
            f"  kubectl get nodes,svc,pods -A\n"
            f"  kubesvc status; kubesvc explain svc/NAME\n"
            f"Logs in {self.logs}/. Ctrl-C stops everything, pods included; "
            f"the next `kubesvc up` brings the stored world back.")

    async def _start_dns(self) -> None:
        """Apply the coredns Deployment; its pod runs once the agent registered the node."""
        await self._apply(dns_deployment(self.kubeconfig, self.node_ip, self.dns_port))
        t0 = time.monotonic()
        while not await dns_ready(self.server):
            if time.monotonic() - t0 > 60:
                console.print("[yellow]cluster DNS not ready after 60s[/]: "
                              "kubectl -n kube-system describe pods -l k8s-app=kube-dns")
                return
            await asyncio.sleep(0.2)
        where = (f"10.96.0.10:53 → {self.node_ip}:{self.dns_port}" if self.dns_port == 53
                 else f"{self.node_ip}:{self.dns_port}")
        console.print(f"[green]✓[/] cluster DNS ({time.monotonic() - t0:.1f}s): "
                      f"kube-system/coredns pods behind kube-system/kube-dns, {where}")

    async def _proxy_detail(self, comp: Component) -> str:
        running = await proxy_mode_running()
        if running and running != self.choice.mode:
            why = proxy_log_reason(comp.log_path) or "see the proxy log"
            self.state.proxy_mode, self.state.proxy_why = running, f"{self.choice.why}; the proxy: {why}"
            return f": [yellow]runs {running}[/] ({why})"
        return f": {running or self.choice.mode}"

    def _write_kubeconfig(self) -> None:
        out = subprocess.run(kubesvc_argv("kubeconfig", "--server", self.server),
                             check=True, capture_output=True, text=True).stdout
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(out)
        # No secret in it (plain HTTP, no credentials): readable, so `sudo kubesvc up` serves a user's kubectl.
        tmp.chmod(0o644)
        os.replace(tmp, self.kubeconfig)

    async def _apply(self, obj: dict) -> None:
        """Server-side apply through the API, as `kubectl apply --server-side` would."""
        from lightkube import codecs

        from kubesvc.client import make_client

        client = make_client(kubeconfig=str(self.kubeconfig), field_manager="kubesvc-up")
        try:
            await client.apply(codecs.from_dict(obj), force=True)
        finally:
            await client.close()
