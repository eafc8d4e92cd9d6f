"""The `kubesvc` entry point.

Each sub-command lives beside the component it runs (``kubesvc/<component>/cmd.py``
exports ``command``, a click command) and is imported only when invoked, so that
``kubesvc dns`` does not pay for importing the proxy, and a component under
construction cannot break the others.
"""

from __future__ import annotations

import importlib

import click

# sub-command name -> module that exports `command`
SUBCOMMANDS: dict[str, str] = {
    "up": "kubesvc.up.cmd",
    "apiserver": "kubesvc.apiserver.cmd",
    "kubeconfig": "kubesvc.apiserver.kubeconfig",
    "controllers": "kubesvc.controllers.cmd",
    "agent": "kubesvc.agent.cmd",
    "proxy": "kubesvc.proxy.cmd",
    "dns": "kubesvc.dns.cmd",
    "explain": "kubesvc.up.explain",
    "status": "kubesvc.up.status",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = SUBCOMMANDS.get(name)
        if module is None:
            return None
        try:
            return importlib.import_module(module).command
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):
                # Listed but not built yet: say so instead of a traceback.
                return click.Command(name, help="(not available in this build)",
                                     callback=lambda: _missing(name))
            raise


def _missing(name: str) -> None:
    raise click.ClickException(f"'kubesvc {name}' is not available in this build")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kubesvc")
def main() -> None:
    """Kubernetes Service networking on one machine, and then on many."""


if __name__ == "__main__":  # pragma: no cover
    main()
