"""``lockgate store ...``: push, ls, cat, log, tag, diff, verify."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lockgate.gateway.cli.console import byte_progress, err, human_bytes, human_rate, out, print_json, short_id
from lockgate.gateway.settings import Settings
from lockgate.gateway.wiring import store_opener
from lockgate.store import PushResult, Store, StoreURI, collect_files, parse_uri
from lockgate.store.errors import InvalidURIError, RefNotFoundError
from lockgate.store.repository import FileSource, size_of
from lockgate.store.timespec import parse_time
from lockgate.store.uri import DEFAULT_BRANCH

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
CreateOption = Annotated[
    bool, typer.Option("--create", help="Create the branch if it does not exist, forked from the default branch.")
]


def open_store(store: str | None, create: bool = False) -> Store:
    settings = Settings(store=store) if store else Settings()
    return store_opener(settings, create=create)()


def _at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise InvalidURIError(str(exc)) from exc


def _moment(target: StoreURI, at: str | None) -> datetime | None:
    """Time travel from ``--at`` or from the URI's ``@{TIME}``; not both."""
    if at is not None and target.at is not None:
        raise InvalidURIError(f"{target} already travels in time with @{{...}}: drop --at")
    return _at(at) if at is not None else target.at


def _resolve(uri: str, store: str | None, at: str | None) -> tuple[Store, StoreURI, str]:
    """Open the store and pin ``uri``'s ref to a commit (as of ``at`` or ``@{TIME}``)."""
    target = parse_uri(uri)
    s = open_store(store)
    return s, target, s.resolve(target.repo, target.ref, _moment(target, at))


@app.command()
def push(
    local_path: Annotated[Path, typer.Argument(help="A local file or directory.", show_default=False)],
    uri: Annotated[str, typer.Argument(help="Destination: lockgate://REPO@BRANCH/DEST.", show_default=False)],
    message: Annotated[str, typer.Option("-m", "--message", help="Commit message.")] = "",
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Commit even when the files are already there, byte for byte.")
    ] = False,
    create: CreateOption = False,
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
    files: list[tuple[str, FileSource]] = list(collect_files(local_path, target.path))
    _commit(store, target, files, message or f"push {local_path.name}", "pushing to", create, allow_empty, as_json)


def _commit(
    store: str | None,
    target: StoreURI,
    files: list[tuple[str, FileSource]],
    message: str,
    doing: str,
    create: bool,
    allow_empty: bool,
    as_json: bool,
) -> None:
    """One commit of ``files`` onto ``target``'s branch, with a progress bar and the summary
    (``store push`` and ``store cp``)."""
    s = open_store(store, create=True)
    start_from = _fork_point(s, target, create)
    total = sum(size_of(src) for _, src in files)
    with byte_progress(f"{doing} {target.repo}@{target.ref.name}", total, enabled=not as_json) as advance:
        result = s.commit_files(
            target.repo,
            target.ref.name,
            files,
            message=message,
            progress=advance,
            allow_empty=allow_empty,
            start_from=start_from,
        )
    if as_json:
        print_json(result.as_dict())
        return
    _print_push(result)


def _fork_point(s: Store, target: StoreURI, create: bool) -> str | None:
    """Where a push to a branch that does not exist yet starts: refused without --create
    (a silent unrelated root is never what was meant), the default branch's head with it.
    The first push to a new repository needs neither."""
    if target.at is not None:
        raise InvalidURIError(f"cannot push to {target}: time travel names the past, push to a branch name")
    if not s.refs.repo_exists(target.repo) or s.branch_exists(target.repo, target.ref.name):
        return None
    branches = s.refs.branches(target.repo)
    if not branches:
        return None
    if not create:
        raise RefNotFoundError(
            f"branch {target.ref.name!r} does not exist in {target.repo!r} (branches: {', '.join(sorted(branches))}): "
            f"add --create to fork it from {DEFAULT_BRANCH!r}, or `lockgate store branch "
            f"lockgate://{target.repo}@REF {target.ref.name}` to fork it from elsewhere"
        )
    if DEFAULT_BRANCH not in branches:
        raise RefNotFoundError(f"--create forks from {DEFAULT_BRANCH!r}, which {target.repo!r} does not have")
    return branches[DEFAULT_BRANCH]


def _print_push(result: PushResult) -> None:
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
    s = open_store(store)
    entries = s.log(target.repo, target.ref, _moment(target, at), limit)
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
    s = open_store(store)
    commit_id = s.tag(target.repo, name, s.resolve_uri(target))
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
    s = open_store(store)
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
    s = open_store(store)
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


@app.command()
def branch(
    uri: Annotated[
        str,
        typer.Argument(
            help="lockgate://REPO@FROM: the branch, tag, commit, ~N or @{TIME} to fork from; with --delete, the branch",
            show_default=False,
        ),
    ],
    new: Annotated[str | None, typer.Argument(help="The new branch's name.", show_default=False)] = None,
    delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete the branch URI names.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --delete: allow deleting the default branch.")] = False,
    store: StoreOption = None,
) -> None:
    """Create a branch from any ref (create-once: of racing creators, exactly one wins), or delete one.

    Examples: lockgate store branch lockgate://datasets@main experiment-1
              lockgate store branch lockgate://models@v1~2 hotfix
              lockgate store branch --delete lockgate://datasets@experiment-1
    """
    target = parse_uri(uri)
    s = open_store(store)
    if delete:
        if new is not None:
            raise InvalidURIError("--delete takes only the branch's URI (lockgate://REPO@BRANCH)")
        head = s.delete_branch(target.repo, target.ref.name, force=force)
        out.print(f"[bold green]deleted[/] branch {target.repo}@{target.ref.name} (was {head})")
        return
    if new is None:
        raise InvalidURIError("name the new branch: lockgate store branch lockgate://REPO@FROM NEW")
    commit_id = s.create_branch(target.repo, new, target.ref, target.at)
    out.print(f"[bold green]created[/] branch {target.repo}@{new} at {commit_id} (from {target})", highlight=False)


@app.command()
def branches(
    repo: Annotated[str, typer.Argument(help="A repository name (or lockgate://REPO).", show_default=False)],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a repository's branches with their heads and last change, newest first."""
    name = parse_uri(repo).repo if repo.startswith("lockgate://") else repo
    rows = open_store(store).branch_heads(name)
    if as_json:
        print_json([{"branch": b, "head": h, "time": c.time, "message": c.message} for b, h, c in rows])
        return
    table = Table("branch", "head", "last change", "message", box=None)
    for branch_name, head, commit in rows:
        table.add_row(branch_name, short_id(head), commit.time, commit.message)
    out.print(table)


@app.command("cp")
def copy(
    source: Annotated[
        str,
        typer.Argument(
            help="A local path, s3://bucket/prefix, an MLflow artifact URI (runs:/, models:/, mlflow-artifacts:/), "
            "or lockgate://REPO@REF/PATH to copy out",
            show_default=False,
        ),
    ],
    destination: Annotated[
        str, typer.Argument(help="lockgate://REPO@BRANCH/DEST to copy in, or a local directory to copy out")
    ],
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Copy a whole S3 prefix.")] = False,
    message: Annotated[str, typer.Option("-m", "--message", help="Commit message.")] = "",
    create: CreateOption = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy files into the store in one commit, streaming into the chunker, or out of it, verified.

    Only chunks the store lacks are stored: a second copy of the same files stores nothing new,
    and a copy that failed half-way resumes from the packs it had finished.

    Examples: lockgate store cp -r s3://raw/fraud/2026-11 lockgate://datasets@main/fraud
              lockgate store cp runs:/RUN_ID/model lockgate://models@main/fraud
              lockgate store cp lockgate://datasets@main~1/fraud ./fraud-previous
    """
    if source.startswith("lockgate://") and not destination.startswith("lockgate://"):
        _copy_out(source, Path(destination), store, as_json)
        return
    target = parse_uri(destination)
    if target.ref.back:
        raise InvalidURIError(f"cannot copy into {target.ref}: copy to a branch name")
    files = _copy_sources(source, target.path, recursive)
    _commit(store, target, files, message or f"cp {source}", "copying into", create, False, as_json)


def _copy_sources(source: str, dest: str, recursive: bool) -> list[tuple[str, FileSource]]:
    if source.startswith("s3://"):
        from lockgate.store.s3_source import s3_sources

        return list(s3_sources(source, dest, recursive=recursive, endpoint_url=Settings().s3_endpoint_url))
    if source.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        from lockgate.loader.mlflow_source import mlflow_sources

        return list(mlflow_sources(source, dest))
    if source.startswith("lockgate://"):
        raise InvalidURIError("to copy within the store, branch or tag instead: lockgate store branch ...")
    return list(collect_files(Path(source), dest))


def _copy_out(source: str, dest: Path, store: str | None, as_json: bool) -> None:
    s, target, commit_id = _resolve(source, store, None)
    report = s.checkout(commit_id, target.path, dest)
    if as_json:
        print_json({"commit": commit_id, "files": report.files, "bytes": report.bytes_written, "paths": report.paths})
        return
    out.print(
        f"[bold green]copied[/] {report.files} file(s), {human_bytes(report.bytes_written)}, verified, "
        f"from {target.repo}@{commit_id} to {dest}"
    )
