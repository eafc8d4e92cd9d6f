"""`kubesvc status`: what `kubesvc up` runs on this machine and whether it is healthy.

Reads DATA/up.json (written by `up`), asks each component's health endpoint, and
counts services, endpoints and pods through the API. Exit status 0 when every
component answers healthy, 1 otherwise (so scripts can wait on it).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click

from kubesvc.up import state as upstate


async def _health(url: str | None, pid: int | None) -> tuple[bool, str]:
    from kubesvc.up.cmd import http_get
    if url is None:  # no endpoint: alive is the best we know
        import os
        if pid is None:
            return False, "not started"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False, "not running"
        except PermissionError:
            pass
        return True, "process alive"
    code, _ = await http_get(url, timeout=2)
    return code == 200, ("ok" if code == 200 else f"HTTP {code}" if code else "no answer")


async def _counts(server: str) -> dict:
    from kubesvc.up.cmd import http_get

    async def items(path: str) -> list[dict]:
        code, body = await http_get(server + path, timeout=5)
        return json.loads(body).get("items", []) if code == 200 else []

    svcs, eps, pods, nodes = await asyncio.gather(items("/api/v1/services"), items("/api/v1/endpoints"),
                                                  items("/api/v1/pods"), items("/api/v1/nodes"))
    by_type: dict[str, int] = {}
    for s in svcs:
        t = s.get("spec", {}).get("type", "ClusterIP")
        if s.get("spec", {}).get("clusterIP") == "None":
            t = "headless"
        by_type[t] = by_type.get(t, 0) + 1
    ready = sum(len(sub.get("addresses") or []) for e in eps for sub in e.get("subsets") or [])
    not_ready = sum(len(sub.get("notReadyAddresses") or []) for e in eps for sub in e.get("subsets") or [])
    phases: dict[str, int] = {}
    for p in pods:
        ph = p.get("status", {}).get("phase", "Pending")
        phases[ph] = phases.get(ph, 0) + 1
    return {"services": len(svcs), "servicesByType": by_type, "endpointAddresses": {"ready": ready,
            "notReady": not_ready}, "pods": len(pods), "podsByPhase": phases, "nodes": len(nodes),
            "reachable": bool(svcs or nodes)}


async def gather(st: upstate.UpState) -> dict:
    comps = []
    results = await asyncio.gather(*(_health(c.health, c.pid) for c in st.components))
    for c, (ok, detail) in zip(st.components, results):
        comps.append({"name": c.name, "pid": c.pid, "state": c.state, "healthy": ok, "health": detail, "healthURL": c.health,
                      "restarts": c.restarts, "lastExit": c.last_exit, "log": c.log})
    counts = await _counts(st.server)
    dns = await _dns_pods(st.server)
    return {"running": st.running, "node": st.node_name, "nodeIP": st.node_ip, "server": st.server,
            "kubeconfig": st.kubeconfig, "uptimeSeconds": int(time.time() - st.started_at),
            "proxy": {"mode": st.proxy_mode, "requested": st.proxy_requested, "why": st.proxy_why},
            "limits": st.limits, "clusterDNS": {"service": "kube-system/kube-dns", "listen": st.dns_listen,
                                                 "pods": dns},
            "components": comps, "counts": counts}


async def _dns_pods(server: str) -> list[dict]:
    from kubesvc.up.cmd import http_get
    code, body = await http_get(server + "/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns")
    out = []
    for p in (json.loads(body).get("items", []) if code == 200 else []):
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions") or []}
        out.append({"name": p["metadata"]["name"], "phase": p.get("status", {}).get("phase"),
                    "ready": conds.get("Ready") == "True"})
    return out


def render(info: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import sys
    con = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    up = "[green]running[/]" if info["running"] else "[red]not running[/]"
    mins, secs = divmod(info["uptimeSeconds"], 60)
    uptime = f", for {mins // 60}h{mins % 60:02d}m{secs:02d}s" if info["running"] else ""
    con.print(f"kubesvc up: {up} on node [bold]{info['node']}[/] ({info['nodeIP']}), API {info['server']}{uptime}")
    con.print(f"proxy mode: [bold]{info['proxy']['mode']}[/] ({escape(info['proxy']['why'])})")
    for limit in info["limits"]:
        con.print(f"  [yellow]cannot[/]: {escape(limit)}")
    t = Table(box=None, pad_edge=False)
    for col in ("COMPONENT", "PID", "STATE", "HEALTH", "RESTARTS", "LOG"):
        t.add_column(col)
    for c in info["components"]:
        health = f"[green]{escape(c['health'])}[/]" if c["healthy"] else f"[red]{escape(c['health'])}[/]"
        t.add_row(c["name"], str(c["pid"] or "-"), c["state"], health, str(c["restarts"]), c["log"])
    dns_pods = info["clusterDNS"]["pods"]
    ready = sum(1 for p in dns_pods if p["ready"])
    t.add_row("cluster DNS", "-", f"{ready}/{len(dns_pods)} pods ready",
              ("[green]ok[/]" if ready else "[red]no ready pod[/]"),
              "-", f"kube-system/kube-dns → {info['clusterDNS']['listen']}: "
              + (", ".join(p["name"] for p in dns_pods) or "no pods"))
    con.print(t)
    n = info["counts"]
    if n["reachable"]:
        types = ", ".join(f"{v} {k}" for k, v in sorted(n["servicesByType"].items()))
        phases = ", ".join(f"{v} {k}" for k, v in sorted(n["podsByPhase"].items()))
        con.print(f"services: {n['services']} ({types}); endpoints: {n['endpointAddresses']['ready']} ready, "
                  f"{n['endpointAddresses']['notReady']} not ready; pods: {n['pods']} ({phases or 'none'}); "
                  f"nodes: {n['nodes']}")
    else:
        con.print("[red]the API server does not answer[/]")
    con.print(f"kubectl: export KUBECONFIG={info['kubeconfig']}")


@click.command("status")
@click.option("--data-dir", envvar="KUBESVC_DATA_DIR", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="kubesvc up's data dir (default /var/lib/kubesvc as root, else ~/.local/share/kubesvc).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(data_dir: Path | None, output: str) -> None:
    """Components of `kubesvc up`, their health, the proxy mode and why, and object counts."""
    data_dir = (data_dir or upstate.find_data_dir()).resolve()
    st = upstate.read(data_dir)
    if st is None:
        raise click.ClickException(f"no kubesvc up state in {data_dir} (start it with: kubesvc up"
                                   f"{'' if data_dir == upstate.find_data_dir() else ' --data-dir ' + str(data_dir)})")
    info = asyncio.run(gather(st))
    if output == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        render(info)
    healthy = info["running"] and all(c["healthy"] for c in info["components"])
    raise SystemExit(0 if healthy else 1)
