"""Entry point of the ``lockgate`` command. Translates library errors into one clear line
on stderr and a non-zero exit code, instead of a traceback."""

from __future__ import annotations

import sys

import typer

from gateway.cli import model_commands, serve_commands, store_commands
from gateway.cli.console import err
from gateway.errors import GatewayError
from loader.errors import LoaderError
from store.errors import StoreError

app = typer.Typer(
    help="lockgate: deploy MLflow registry versions from a versioned, content-addressed store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(store_commands.app, name="store")
app.command("resolve")(model_commands.resolve)
app.command("fetch")(model_commands.fetch)
app.command("import")(model_commands.import_)
for command in (serve_commands.serve, serve_commands.deploy, serve_commands.endpoints, serve_commands.undeploy,
                serve_commands.rollback, serve_commands.lineage):  # fmt: skip
    app.command()(command)


def main() -> None:
    try:
        app()
    except (StoreError, LoaderError, GatewayError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
