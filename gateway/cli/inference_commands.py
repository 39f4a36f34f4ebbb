"""``lockgate inference ...``: the inference log of an endpoint, read from the store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lockgate.gateway.cli.console import out, print_json, short_id
from lockgate.gateway.cli.store_commands import JsonOption, StoreOption, open_store
from lockgate.gateway.inference_reader import live_scores, logged_files
from lockgate.store.errors import InvalidURIError
from lockgate.store.timespec import parse_time

app = typer.Typer(
    help=(
        "Read an endpoint's inference log: the sampled rows it served (with the weights that answered "
        "them) and the labels sent to POST /endpoints/NAME/feedback, committed to the store's 'inference' "
        "repository, branch NAME. In pandas: pd.read_parquet('lockgate://inference@NAME/windows/...').\n\n"
        "Turn it on per endpoint: lockgate serve MODEL_URI --inference-log-sample 0.1"
    ),
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The endpoint name (the log's branch).", show_default=False)]


def ls(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """List the committed windows of endpoint NAME: commit, file URI, rows, version, weights
    commit, role, first and last row time.

    Example: lockgate inference ls fraud
    """
    files = logged_files(open_store(store), name)
    if as_json:
        print_json({"endpoint": name, "files": [f.as_dict() for f in files]})
        return
    table = Table("commit", "file", "rows", "version", "weights", "role", "start", "end", box=None)
    for f in files:
        table.add_row(short_id(f.commit), f.uri, str(f.rows), f.version, short_id(f.weights_commit), f.role,
                      f.start, f.end)  # fmt: skip
    out.print(table)
    out.print(f"{len(files)} file(s), {sum(f.rows for f in files):,} row(s)")


def score(
    name: NameArgument,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only answers from TIME on (ISO 8601, unix seconds, or '1h ago')."),
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The live score of endpoint NAME from the log itself: every replica's logged answers joined
    to every label committed (the latest label of a row counts), per version and role. Accuracy for
    classifiers; rmse, mae and r2 for regressors.

    Example: lockgate inference score fraud --since '1 day ago' --json
    """
    try:
        moment = parse_time(since) if since else None
    except ValueError as exc:
        raise InvalidURIError(str(exc)) from exc
    found = live_scores(open_store(store), name, moment)
    if as_json:
        print_json({"endpoint": name, "since": moment.isoformat() if moment else None, "scores": found})
        return
    table = Table("version", "role", "answers", "labelled", "scores", box=None)
    for entry in found:
        shown = ", ".join(f"{metric} {value:.4f}" for metric, value in entry["scores"].items()) or "-"
        table.add_row(entry["version"], entry["role"], f"{entry['answers']:,}", f"{entry['labelled']:,}", shown)
    out.print(table)
