"""`kubesvc apiserver`: run the Kubernetes-compatible API server."""

from __future__ import annotations

import logging

import click


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("1h", "1h30m", "90s", "250ms") or a plain number of seconds."""
    import re
    try:
        return float(text)
    except ValueError:
        pass
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(f"invalid duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


@click.command("apiserver")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Where the store lives.")
@click.option("--listen", default="127.0.0.1:6443", show_default=True, help="HOST:PORT to serve plain HTTP on.")
@click.option("--store", "store", default="sqlite", type=click.Choice(["sqlite", "etcd"]), show_default=True)
@click.option("--etcd-endpoints", default="", help="Comma-separated etcd URLs (with --store etcd).")
@click.option("--service-cluster-ip-range", default="10.96.0.0/12", show_default=True)
@click.option("--service-node-port-range", default="30000-32767", show_default=True)
@click.option("--advertise-address", default="", help="Address of the API in the kubernetes Endpoints "
              "(default: the listen host; for 0.0.0.0 the host's default-route address, else 127.0.0.1).")
@click.option("--watch-history", default=20000, show_default=True, type=int,
              help="Changes kept for watches resuming from an older resourceVersion (older: 410 Expired).")
@click.option("--event-ttl", default="1h", show_default=True,
              help="How long an Event is kept after its last change (Go duration: 1h, 30m, 90s).")
@click.option("-v", "--verbose", count=True)
def command(data_dir: str, listen: str, store: str, etcd_endpoints: str, service_cluster_ip_range: str,
            service_node_port_range: str, advertise_address: str, watch_history: int, event_ttl: str, verbose: int) -> None:
    """Serve the Kubernetes API (core/v1, apps/v1, discovery.k8s.io/v1, coordination.k8s.io/v1)."""
    import os

    from kubesvc.apiserver.app import Config, run

    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    os.makedirs(data_dir, exist_ok=True)
    run(Config(data_dir=data_dir, host=host, port=int(port), store=store, etcd_endpoints=etcd_endpoints,
               service_cluster_ip_range=service_cluster_ip_range,
               service_node_port_range=service_node_port_range, advertise_address=advertise_address,
               watch_history=watch_history, event_ttl=parse_duration(event_ttl)))
