"""`kubesvc proxy`: run this node's service proxy with one data plane."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket

import click

from kubesvc.client import client_options, make_client

log = logging.getLogger("kubesvc.proxy")


def parse_duration(text: str) -> float:
    """Go-style durations as kube-proxy takes them: 1s, 500ms, 1m30s, or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total, pos = 0.0, 0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise click.BadParameter(f"invalid duration {text!r} (e.g. 1s, 500ms, 1m)")
    return total


def choose_mode(mode: str, is_root: bool, *, no_fallback: bool = False,
                scheduler: str = "rr") -> tuple[str, str]:
    """(data plane to run, why) — the seed's rule, decided in kubesvc.proxy.modes:
    ipvs when the kernel has IPVS, otherwise iptables; userspace without root."""
    from kubesvc.proxy.modes import choose_mode as choose
    built = ("userspace", "iptables", "ipvs") + (("nftables",) if is_root and shutil.which("nft") else ())
    c = choose(mode, is_root=is_root, no_fallback=no_fallback, scheduler=scheduler, built=built)
    return c.mode, c.reason


@click.command("proxy")
@client_options
@click.option("--mode", type=click.Choice(["auto", "userspace", "iptables", "ipvs", "nftables"]),
              default="auto", show_default=True, help="Data plane.")
@click.option("--node-name", default=None, help="This node's name (default: hostname).")
@click.option("--node-ip", default=None, help="This node's IPv4 address(es), comma separated.")
@click.option("--iptables-backend", type=click.Choice(["auto", "legacy", "nft"]), default="auto",
              show_default=True, help="iptables flavour; auto follows what the system already uses.")
@click.option("--ipvs-scheduler", default="rr", show_default=True,
              help="IPVS scheduler (rr, wrr, lc, sh, mh, ...) for --mode=ipvs.")
@click.option("--no-fallback", is_flag=True,
              help="Exit with the reason instead of falling back to iptables when the mode cannot run.")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True,
              help="Pod CIDR: traffic from outside it to a ClusterIP is masqueraded ('' = never).")
@click.option("--healthz-bind-address", default="0.0.0.0:10256", show_default=True)
@click.option("--metrics-bind-address", default="127.0.0.1:10249", show_default=True)
@click.option("--min-sync-period", default="1s", show_default=True)
@click.option("--sync-period", default="30s", show_default=True)
@click.option("-v", "--verbose", count=True)
def command(kubeconfig, server, mode, node_name, node_ip, iptables_backend, ipvs_scheduler, no_fallback,
            cluster_cidr,
            healthz_bind_address, metrics_bind_address, min_sync_period, sync_period, verbose):
    """Carry this node's service traffic to endpoints, as kube-proxy does."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    min_sp, sp = parse_duration(min_sync_period), parse_duration(sync_period)
    is_root = os.geteuid() == 0
    from kubesvc.proxy.modes import ModeError
    try:
        chosen, why = choose_mode(mode, is_root, no_fallback=no_fallback, scheduler=ipvs_scheduler)
    except ModeError as err:
        raise click.ClickException(str(err))
    if chosen == "iptables" and not is_root:
        raise click.ClickException("--mode=iptables needs root (kernel rules)")
    node_name = node_name or socket.gethostname()
    node_ips = tuple(ip.strip() for ip in node_ip.split(",")) if node_ip else ()

    from kubesvc.proxy.dataplanes.iptables import IptablesDataPlane, detect_backend
    backend = None
    if is_root and shutil.which("iptables-restore"):
        backend, bwhy = detect_backend(iptables_backend)
        log.info("iptables backend: %s (%s)", backend.name, bwhy)
    if chosen == "iptables":
        dataplane = IptablesDataPlane(backend, cluster_cidr=cluster_cidr or None)
    elif chosen == "ipvs":
        from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane
        dataplane = IpvsDataPlane(backend, scheduler=ipvs_scheduler, cluster_cidr=cluster_cidr or None)
    elif chosen == "nftables":
        from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
        dataplane = NftablesDataPlane(cluster_cidr=cluster_cidr or None)
    else:
        from kubesvc.proxy.dataplanes.userspace import UserspaceDataPlane
        dataplane = UserspaceDataPlane(backend, cluster_cidr=cluster_cidr or None)
        if backend is None:
            log.warning("userspace without root: only NodePorts are served; ClusterIPs need root")
    log.info("proxy mode: %s (%s); node %s", chosen, why, node_name)

    async def main() -> None:
        from kubesvc.proxy.server import ProxyServer
        client = make_client(kubeconfig, server, field_manager="kube-proxy")
        proxy = ProxyServer(client, dataplane, node_name=node_name, node_ips=node_ips,
                            min_sync_period=min_sp, sync_period=sp,
                            healthz_bind=healthz_bind_address or None,
                            metrics_bind=metrics_bind_address or None)
        await proxy.run()

    try:
        import uvloop
        uvloop.run(main())
    except KeyboardInterrupt:
        pass
