"""``lockgate store ...``: push, ls, cat, log, tag, diff, verify."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.console import byte_progress, err, human_bytes, human_rate, out, print_json
from gateway.cli.timespec import parse_time
from gateway.settings import Settings
from gateway.wiring import store_opener
from store import Store, StoreURI, collect_files, parse_uri
from store.errors import InvalidURIError

app = typer.Typer(
    help=(
        "Work with the versioned, chunked store directly.\n\n"
        "URIs look like lockgate://REPO@REF/PATH, where REF is a branch, a tag or a commit id, "
        "optionally with ~N for N commits back (main~1). The store root comes from --store or "
        "LOCKGATE_STORE: a directory (default .lockgate/store) or s3://bucket/prefix."
    ),
    no_args_is_help=True,
)

StoreOption = Annotated[
    str | None, typer.Option("--store", help="Store root (directory or s3://bucket/prefix). Env: LOCKGATE_STORE.")
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Time travel: the ref as it was at TIME (ISO 8601, unix seconds, or '15m ago')."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def _open(store: str | None, create: bool = False) -> Store:
    settings = Settings(store=store) if store else Settings()
    return store_opener(settings, create=create)()


def _at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise InvalidURIError(str(exc)) from exc


def _resolve(uri: str, store: str | None, at: str | None) -> tuple[Store, StoreURI, str]:
    """Open the store and pin ``uri``'s ref to a commit (as of ``at``)."""
    target = parse_uri(uri)
    s = _open(store)
    return s, target, s.resolve(target.repo, target.ref, _at(at))


@app.command()
def push(
    local_path: Annotated[Path, typer.Argument(help="A local file or directory.", show_default=False)],
    uri: Annotated[str, typer.Argument(help="Destination: lockgate://REPO@BRANCH/DEST.", show_default=False)],
    message: Annotated[str, typer.Option("-m", "--message", help="Commit message.")] = "",
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Commit even when the files are already there, byte for byte.")
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Commit a local file or directory to a branch, storing only chunks the store lacks.

    Pushing bytes the branch already holds at that path makes no commit ("no changes"),
    unless --allow-empty.

    Example: lockgate store push model.pkl lockgate://models@main/fraud/model.pkl -m "retrain"
    """
    target = parse_uri(uri)
    if target.ref.back:
        raise InvalidURIError(f"cannot push to {target.ref}: push to a branch name, not a commit in its history")
    s = _open(store, create=True)
    files = collect_files(local_path, target.path)
    total = sum(p.stat().st_size for _, p in files)
    with byte_progress(f"pushing to {target.repo}@{target.ref.name}", total, enabled=not as_json) as advance:
        result = s.commit_files(
            target.repo,
            target.ref.name,
            files,
            message=message or f"push {local_path.name}",
            progress=advance,
            allow_empty=allow_empty,
        )
    if as_json:
        print_json(result.as_dict())
        return
    if not result.changed:
        out.print(
            f"[bold]no changes[/]: {result.repo}@{result.branch} ({result.commit_id}) already holds these bytes "
            "at that path; nothing committed (--allow-empty commits anyway)"
        )
        return
    out.print(f"[bold green]committed[/] {result.commit_id} to {result.repo}@{result.branch}")
    out.print(
        f"  files {result.files}   total {human_bytes(result.bytes_total)}   "
        f"new {human_bytes(result.bytes_new)}   reused {human_bytes(result.bytes_reused)}   "
        f"stored {human_bytes(result.bytes_stored)}   "
        f"{result.seconds:.2f}s{human_rate(result.bytes_total, result.seconds)}"
    )


@app.command("ls")
def list_files(
    uri: Annotated[str, typer.Argument(help="lockgate://REPO@REF/PATH", show_default=False)],
    at: AtOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the files at or under a path, with sizes."""
    s, target, commit_id = _resolve(uri, store, at)
    files = s.list_files(commit_id, target.path)
    if as_json:
        print_json(
            {"commit": commit_id, "files": {p: {"size": e.size, "manifest": e.manifest_id} for p, e in files.items()}}
        )
        return
    out.print(f"{target.repo}@{target.ref} = [yellow]{commit_id}[/]", highlight=False)
    table = Table(box=None)
    table.add_column("size", justify="right")
    table.add_column("path")
    for path, entry in sorted(files.items()):
        table.add_row(human_bytes(entry.size), path)
    out.print(table)


@app.command("cat")
def cat_file(
    uri: Annotated[str, typer.Argument(help="lockgate://REPO@REF/PATH of one file", show_default=False)],
    offset: Annotated[int, typer.Option(min=0, help="First byte to print.")] = 0,
    length: Annotated[int | None, typer.Option(min=0, help="How many bytes to print (default: to the end).")] = None,
    at: AtOption = None,
    store: StoreOption = None,
) -> None:
    """Write one file's verified bytes to stdout (optionally a byte range)."""
    s, target, commit_id = _resolve(uri, store, at)
    sink = sys.stdout.buffer
    for piece in s.stream_file(commit_id, target.path, offset, length):
        sink.write(piece)
    sink.flush()


@app.command()
def log(
    uri: Annotated[str, typer.Argument(help="lockgate://REPO@BRANCH", show_default=False)],
    limit: Annotated[int | None, typer.Option("-n", "--limit", help="Show at most N commits.")] = None,
    at: AtOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a branch's history, newest first."""
    target = parse_uri(uri)
    s = _open(store)
    entries = s.log(target.repo, target.ref, _at(at), limit)
    if as_json:
        print_json([{"commit": cid, **c.payload()} for cid, c in entries])
        return
    for cid, commit in entries:
        out.print(f"[yellow]commit {cid}[/]")
        out.print(f"Author: {commit.author}\nDate:   {commit.time}")
        for key, value in sorted(commit.metadata.items()):
            out.print(f"Meta:   {key}={value}")
        out.print(f"\n    {commit.message}\n", highlight=False)


@app.command()
def tag(
    uri: Annotated[
        str, typer.Argument(help="lockgate://REPO@COMMIT (or a branch, tagged at its head)", show_default=False)
    ],
    name: Annotated[str, typer.Argument(help="The new tag. Tags are create-once and never move.", show_default=False)],
    store: StoreOption = None,
) -> None:
    """Create an immutable tag on a commit."""
    target = parse_uri(uri)
    s = _open(store)
    commit_id = s.tag(target.repo, name, target.ref)
    out.print(f"[bold green]tagged[/] {target.repo}@{name} -> {commit_id}")


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="lockgate://REPO@REF[/PATH]", show_default=False)],
    new: Annotated[str, typer.Argument(help="lockgate://REPO@REF[/PATH]", show_default=False)],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show files added, removed and modified between two commits (or two paths)."""
    a, b = parse_uri(old), parse_uri(new)
    s = _open(store)
    changes = s.diff(a, b)
    if as_json:
        print_json([c.__dict__ for c in changes])
        return
    if not changes:
        out.print("no differences")
    marks = {"added": "[green]+[/]", "removed": "[red]-[/]", "modified": "[yellow]M[/]"}
    for change in changes:
        old_size = "-" if change.old_size is None else change.old_size
        new_size = "-" if change.new_size is None else change.new_size
        sizes = f"{old_size} -> {new_size}"
        out.print(f"{marks[change.status]} {change.path}  ({sizes} bytes)")


@app.command()
def verify(
    repo: Annotated[str | None, typer.Argument(help="Repository to check (default: all).", show_default=False)] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read back and hash every commit, tree, manifest and chunk reachable from the refs.

    Exits 1 if anything is damaged, naming each bad object and the files it affects.
    """
    s = _open(store)
    report = s.verify([repo] if repo else None)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "repos": report.repos,
                "commits": report.commits,
                "files": report.files,
                "chunks": report.chunks,
                "bytes_checked": report.bytes_checked,
                "problems": [str(p) for p in report.problems],
            }
        )
    else:
        out.print(
            f"checked {len(report.repos)} repos, {report.commits} commits, {report.files} files, "
            f"{report.chunks} chunks ({human_bytes(report.bytes_checked)})"
        )
        for problem in report.problems:
            err.print(f"[bold red]DAMAGED[/] {problem}", highlight=False)
        if report.ok:
            out.print("[bold green]ok[/]: everything verifies")
    if not report.ok:
        raise typer.Exit(1)
