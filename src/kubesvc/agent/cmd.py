"""`kubesvc agent`: the node agent command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

import click

from kubesvc.client import client_options, make_client


def detect_node_ip() -> str:
    """The address of the default route's interface, else the first global IPv4 address."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        oif = None
        for r in ipr.get_default_routes(family=2):
            oif = r.get_attr("RTA_OIF")
            break
        addrs = ipr.get_addr(family=2)
        for a in addrs:
            if oif is not None and a["index"] == oif:
                return a.get_attr("IFA_ADDRESS")
        for a in addrs:
            ip = a.get_attr("IFA_ADDRESS")
            if a["scope"] == 0 and not ip.startswith("127."):
                return ip
    return "127.0.0.1"


def default_state_dir(node_name: str) -> Path:
    import os
    if os.geteuid() == 0:
        return Path("/var/lib/kubesvc/agent") / node_name
    return Path.home() / ".local/share/kubesvc/agent" / node_name


@click.command("agent")
@client_options
@click.option("--node-name", default=None, help="This node's name (default: the hostname).")
@click.option("--node-ip", default=None, help="This node's InternalIP (default: the default route's address).")
@click.option("--pod-cidr", default=None,
              help="This node's pod CIDR (default: the Node's spec.podCIDR, set by the node IPAM controller).")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True,
              help="All pods' addresses: traffic leaving it is masqueraded.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where pod records and logs live (default /var/lib/kubesvc/agent/NODE).")
@click.option("--listen-port", type=int, default=10250, show_default=True,
              help="HTTP port for logs (/containerLogs) and /healthz, on all addresses.")
@click.option("--address", default="0.0.0.0", show_default=True, help="Address the HTTP port listens on.")
@click.option("--cluster-dns", default="10.96.0.10", show_default=True, help="Pods' nameserver.")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--netns-prefix", default=None,
              help="Prefix of pod network namespace names (default: the node name).")
@click.option("--restart-backoff", type=float, default=10.0, show_default=True,
              help="First crash-loop back-off in seconds (doubles up to 300).")
@click.option("--lease-renew", type=float, default=10.0, show_default=True,
              help="Seconds between node Lease renewals.")
@click.option("--container-log-max-size", type=int, default=10, show_default=True,
              help="MiB a running container's log may reach before it is rotated.")
@click.option("--kill-pods-on-exit", is_flag=True, default=False,
              help="Stop this node's pods when the agent exits (default: leave them to the next agent).")
@click.option("-v", "--verbose", is_flag=True, default=False)
def command(kubeconfig, server, node_name, node_ip, pod_cidr, cluster_cidr, state_dir, listen_port,
            address, cluster_dns, cluster_domain, netns_prefix, restart_backoff, lease_renew,
            container_log_max_size, kill_pods_on_exit, verbose) -> None:
    """Run the pods bound to this node (kubesvc's kubelet and bridge CNI)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s")
    import faulthandler
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <agent>` dumps every thread's stack
    from kubesvc.agent import procs

    # Before any thread exists (setns of a mount namespace needs a single-threaded process).
    logging.getLogger("kubesvc.agent").info("%s", procs.join_machine_mount_namespace())
    from kubesvc.agent.agent import Agent, AgentConfig

    node_name = node_name or socket.gethostname().split(".")[0].lower()
    cfg = AgentConfig(node_name=node_name, node_ip=node_ip or detect_node_ip(),
                      state_dir=(state_dir or default_state_dir(node_name)).resolve(),
                      pod_cidr=pod_cidr, cluster_cidr=cluster_cidr, listen_port=listen_port, address=address,
                      cluster_dns=cluster_dns, cluster_domain=cluster_domain,
                      netns_prefix=netns_prefix or "", backoff_base=restart_backoff,
                      lease_renew=lease_renew, kill_pods_on_exit=kill_pods_on_exit,
                      container_log_max_size=container_log_max_size * 1024 * 1024)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = make_client(kubeconfig, server, field_manager="kubesvc-agent")
        try:
            await Agent(client, cfg).run(stop)
        finally:
            await client.close()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
