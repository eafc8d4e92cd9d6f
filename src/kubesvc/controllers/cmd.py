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
                   "replicasets, scheduler, nodeipam, loadbalancer ('*' = all).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def command(kubeconfig, server, cluster_cidr, node_cidr_mask_size, lb_pool, controllers, verbose):
    """Run the controllers: endpoints, endpointslices, deployments, replicasets, the
    scheduler, node IPAM and LoadBalancer addresses."""
    from kubesvc.controllers.loadbalancer import parse_pool
    from kubesvc.controllers.manager import ALL_CONTROLLERS, ControllerManager
    from kubesvc.controllers.nodeipam import CIDRSet

    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = [n.strip() for n in controllers.split(",") if n.strip()]
    if "*" in names:
        names = list(ALL_CONTROLLERS)
    unknown = [n for n in names if n not in ALL_CONTROLLERS]
    if unknown:
        raise click.BadParameter(f"unknown controllers: {', '.join(unknown)} "
                                 f"(known: {', '.join(ALL_CONTROLLERS)})", param_hint="--controllers")
    try:
        parse_pool(lb_pool)
        CIDRSet(cluster_cidr, node_cidr_mask_size)
    except ValueError as err:
        raise click.BadParameter(str(err))

    async def main() -> None:
        client = make_client(kubeconfig, server, field_manager="kube-controller-manager")
        mgr = ControllerManager(client, names, cluster_cidr=cluster_cidr,
                                node_cidr_mask_size=node_cidr_mask_size, lb_pool=lb_pool)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await mgr.start()
        click.echo(f"kubesvc controllers: running {', '.join(names)}", err=True)
        await stop.wait()
        await mgr.stop()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
