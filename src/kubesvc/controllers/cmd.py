"""`kubesvc controllers`: kube-controller-manager and kube-scheduler for kubesvc, in one process."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from kubesvc.client import client_options, make_client


@click.command("controllers")
@client_options
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True,
              help="Pod CIDR split into per-node ranges (node IPAM).")
@click.option("--node-cidr-mask-size", default=24, show_default=True, type=int,
              help="Prefix length of each node's pod CIDR.")
@click.option("--lb-pool", default=None,
              help="LoadBalancer address pool: RANGE[,RANGE], each a CIDR or first-last.")
@click.option("--controllers", "controllers", default="*", show_default=True,
              help="Comma-separated controllers to run: endpoints, endpointslices, deployments, "
                   "replicasets, scheduler, nodeipam, loadbalancer, nodelifecycle; '*' = all but "
                   "nodelifecycle, '-name' removes one (e.g. '*,nodelifecycle,-scheduler').")
@click.option("--node-monitor-grace-period", default=40.0, show_default=True, type=float,
              help="nodelifecycle: seconds without a heartbeat before a node is Unknown.")
@click.option("--pod-eviction-timeout", default=300.0, show_default=True, type=float,
              help="nodelifecycle: seconds a node is down before pods without a NoExecute "
                   "toleration for its taint are evicted (the API server gives pods 300 s ones; "
                   "their tolerationSeconds rule).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def command(kubeconfig, server, cluster_cidr, node_cidr_mask_size, lb_pool, controllers,
            node_monitor_grace_period, pod_eviction_timeout, verbose):
    """Run the controllers: endpoints, endpointslices, deployments, replicasets, the
    scheduler, node IPAM and LoadBalancer addresses."""
    from kubesvc.controllers.loadbalancer import parse_pool
    from kubesvc.controllers.manager import ControllerManager, resolve_controllers
    from kubesvc.controllers.nodeipam import CIDRSet

    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        names = resolve_controllers(controllers)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--controllers")
    try:
        parse_pool(lb_pool)
        CIDRSet(cluster_cidr, node_cidr_mask_size)
    except ValueError as err:
        raise click.BadParameter(str(err))

    async def main() -> None:
        client = make_client(kubeconfig, server, field_manager="kube-controller-manager")
        mgr = ControllerManager(client, names, cluster_cidr=cluster_cidr,
                                node_cidr_mask_size=node_cidr_mask_size, lb_pool=lb_pool,
                                node_monitor_grace_period=node_monitor_grace_period,
                                pod_eviction_timeout=pod_eviction_timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await mgr.start()
        click.echo(f"kubesvc controllers: running {', '.join(names)}", err=True)
        await stop.wait()
        await mgr.stop()
        await client.close()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
