"""`kubesvc kubeconfig --server URL`: print a kubeconfig kubectl uses as is."""

from __future__ import annotations

import click
import yaml


def kubeconfig(server: str, name: str = "kubesvc", namespace: str = "default") -> dict:
    """A kubeconfig document for a plain-HTTP kubesvc API server."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


@click.command("kubeconfig")
@click.option("--server", default="http://127.0.0.1:6443", show_default=True, help="The API server URL.")
@click.option("--name", default="kubesvc", show_default=True, help="Cluster, user and context name.")
def command(server: str, name: str) -> None:
    """Print a kubeconfig for the API server at URL."""
    click.echo(yaml.safe_dump(kubeconfig(server, name), sort_keys=False), nl=False)
