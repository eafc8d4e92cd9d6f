"""`kubesvc dns`: the cluster DNS server (kubesvc's CoreDNS)."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from kubesvc.client import client_options


def _off(value: str | None) -> str | None:
    return None if value in (None, "", "off", "none") else value


@click.command("dns")
@client_options
@click.option("--listen", default="0.0.0.0:53", show_default=True, help="ADDR:PORT for DNS over UDP and TCP.")
@click.option("--zone", default="cluster.local", show_default=True, help="The cluster domain.")
@click.option("--upstream", "upstreams", multiple=True, metavar="ADDR[:PORT]",
              help="Where names outside the zone go (repeatable); default: /etc/resolv.conf's nameservers.")
@click.option("--ttl", default=30, show_default=True, type=click.IntRange(0, 3600), help="TTL of cluster answers.")
@click.option("--pods", type=click.Choice(["insecure", "verified", "disabled"]), default="insecure",
              show_default=True, help="How a-b-c-d.<ns>.pod.<zone> names are answered.")
@click.option("--health-listen", default=":8080", show_default=True, help="/health address ('off' to disable).")
@click.option("--ready-listen", default=":8181", show_default=True, help="/ready address ('off' to disable).")
@click.option("--metrics-listen", default=":9153", show_default=True, help="/metrics address ('off' to disable).")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def command(kubeconfig, server, listen, zone, upstreams, ttl, pods, health_listen, ready_listen, metrics_listen,
            verbose):
    """Serve cluster DNS (Kubernetes DNS spec 1.1.0) from the API, forwarding other names."""
    from kubesvc.dns.app import DNSApp, DNSConfig

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # one line per API request is noise for a long-running watcher
        for noisy in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = DNSConfig(listen=listen, zone=zone, upstreams=list(upstreams), ttl=ttl, pods=pods,
                    health_listen=_off(health_listen), ready_listen=_off(ready_listen),
                    metrics_listen=_off(metrics_listen), kubeconfig=kubeconfig, server=server)

    async def main() -> None:
        app = DNSApp(cfg)
        await app.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await app.stop()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
