"""API clients for the spokes (controllers, agent, proxy, dns).

Every spoke talks to the API server only through lightkube's AsyncClient; this
package adds what lightkube lacks: an informer (list+watch cache with handlers)
and one way to build a client from `--kubeconfig` / `--server`.
"""

from __future__ import annotations

import os

from lightkube import AsyncClient, KubeConfig

from kubesvc.client.informer import EventHandler, Informer

__all__ = ["AsyncClient", "EventHandler", "Informer", "make_client", "client_options"]


def make_client(kubeconfig: str | None = None, server: str | None = None,
                field_manager: str = "kubesvc") -> AsyncClient:
    """An AsyncClient for `--server URL`, else `--kubeconfig F`, else $KUBECONFIG / ~/.kube/config."""
    if server:
        # from_server leaves the user unset and lightkube then refuses to build a
        # client ("Missing user"): an empty user means no credentials, as intended.
        from lightkube.config.models import Cluster, User
        config = KubeConfig.from_one(cluster=Cluster(server=server), user=User())
    elif kubeconfig:
        config = KubeConfig.from_file(kubeconfig)
    elif os.environ.get("KUBECONFIG"):
        config = KubeConfig.from_file(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    else:
        config = KubeConfig.from_env()
    return AsyncClient(config, field_manager=field_manager, timeout=30)


def client_options(f):
    """click decorator adding --kubeconfig and --server to a spoke's command."""
    import click

    f = click.option("--server", envvar="KUBESVC_SERVER", default=None,
                     help="API server URL (instead of a kubeconfig).")(f)
    f = click.option("--kubeconfig", envvar="KUBECONFIG", default=None,
                     type=click.Path(dir_okay=False), help="Path to a kubeconfig file.")(f)
    return f
