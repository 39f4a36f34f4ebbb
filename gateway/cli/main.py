"""Entry point of the ``lockgate`` command. Translates library errors into one clear line
on stderr and a non-zero exit code, instead of a traceback."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from pydantic import ValidationError

# typer 0.29 vendors click; its usage errors are these classes, not click's own.
from typer._click import exceptions as click_errors

from lockgate.gateway.cli import (
    gateway_commands,
    inference_commands,
    model_commands,
    serve_commands,
    sign_command,
    store_commands,
    store_gc_command,
)
from lockgate.gateway.cli.console import err
from lockgate.gateway.errors import GatewayError
from lockgate.gateway.tracing import TracingSettingError
from lockgate.loader.errors import LoaderError
from lockgate.store.errors import StoreError

app = typer.Typer(
    help="lockgate: deploy MLflow registry versions from a versioned, content-addressed store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
store_commands.app.command("gc")(store_gc_command.gc)
store_commands.app.command("sign")(sign_command.sign)
app.add_typer(store_commands.app, name="store")
inference_commands.app.command("ls")(inference_commands.ls)
inference_commands.app.command("score")(inference_commands.score)
app.add_typer(inference_commands.app, name="inference")
app.command("resolve")(model_commands.resolve)
app.command("fetch")(model_commands.fetch)
app.command("materialize")(model_commands.materialize)
app.command("import")(model_commands.import_)
app.command()(serve_commands.serve)
for command in (gateway_commands.deploy, gateway_commands.promote, gateway_commands.abort, gateway_commands.endpoints,
                gateway_commands.undeploy, gateway_commands.rollback, gateway_commands.lineage):  # fmt: skip
    app.command()(command)


def _tidy_help(command: Any) -> None:
    """Help that reads as a man page: arguments as MODEL_URI, flags without a ``<bool>`` type
    label, and option values named by what they are (typer's defaults print ``{model_uri}``
    and ``<bool>``)."""
    for param in command.params:
        if param.param_type_name == "argument":
            param.metavar = (param.name or "").upper()
        elif getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False):
            param.metavar = ""
        elif param.metavar is None and param.name not in ("install_completion", "show_completion"):
            param.metavar = (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def main() -> None:
    command = typer.main.get_command(app)
    _tidy_help(command)
    try:
        # standalone_mode=False: usage errors reach us, to be said in one line like every other.
        code = command(standalone_mode=False, prog_name="lockgate")
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "lockgate"
        err.print(f"[bold red]error:[/] {exc.format_message()} (see '{path} --help')", highlight=False)
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        err.print(f"[bold red]error:[/] {exc.format_message()}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    except (StoreError, LoaderError, GatewayError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except TracingSettingError as exc:  # an OTEL_* variable lockgate cannot honour
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # A bad LOCKGATE_* variable: name it, in one line, rather than pydantic's report.
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        variable = name.upper() if name.upper().startswith(("MLFLOW_", "LOCKGATE_")) else f"LOCKGATE_{name.upper()}"
        err.print(f"[bold red]error:[/] {variable}: {first['msg']}, not {first.get('input')!r}", highlight=False)
        sys.exit(2)
    except Exception as exc:
        # A bug or an error no layer translated: still one line, with the way to the details.
        if os.environ.get("LOCKGATE_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        err.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {message} (LOCKGATE_DEBUG=1 shows the traceback)",
            highlight=False,
        )
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
