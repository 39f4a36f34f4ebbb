"""``lockgate store gc``: free what nothing references (``store.gc``), safely beside writers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from lockgate.gateway.cli.console import err, human_bytes, out, print_json
from lockgate.gateway.cli.store_commands import JsonOption, StoreOption, open_store
from lockgate.store.gc import DEFAULT_REPACK_THRESHOLD
from lockgate.store.history_retention import HistoryRetention
from lockgate.store.leases import Lease
from lockgate.store.timespec import parse_duration, parse_time


def _seconds(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def gc(
    store: StoreOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be freed; delete nothing.")] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="Never delete anything written less than this long ago (30s, 15m, 1h, ...): "
            "a second line of defence beside the leases that writers hold.",
        ),
    ] = "1h",
    ledger_retention: Annotated[
        str | None,
        typer.Option(
            "--ledger-retention",
            help="Keep the commits the deployment ledger names only from events this recent (e.g. 90d). "
            "Default: every commit the ledger has ever named.",
            show_default=False,
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last",
            min=1,
            help="History retention: behind each branch, tag and ledger-named commit keep only the newest N "
            "commits (the ref's own counts). Default: keep all history.",
            show_default=False,
        ),
    ] = None,
    keep_since: Annotated[
        str | None,
        typer.Option(
            "--keep-since",
            help="History retention: keep commits made since this time (90d, 2026-06-01, ...), and drop older "
            "history behind each ref. With --keep-last, a commit either rule names is kept.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        str, typer.Option("--wait", help="How long to wait for running pushes to commit before giving up.")
    ] = "10m",
    repack_threshold: Annotated[
        float,
        typer.Option(
            "--repack-threshold",
            min=0.01,
            max=1.0,
            help="Rewrite a pack still in use when at least this share of it is dead, keeping only its live "
            "chunks (0.5: at most one byte written per byte freed). Commits and manifests never change: "
            "readers follow a relocation record.",
        ),
    ] = DEFAULT_REPACK_THRESHOLD,
    no_repack: Annotated[bool, typer.Option("--no-repack", help="Keep every pack that is still in use whole.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete packs, indexes and objects that no branch, tag or ledger entry reaches, and the
    half-written files of killed pushes.

    Safe beside running pushes: it takes the store's collector lease, waits until every push
    that holds a writer lease has committed, marks from every branch and tag of every
    repository and every commit the deployment ledger names, re-checks the refs, and only then
    sweeps what is unreachable and older than --grace. Pushes that start meanwhile wait for it.
    By default history is kept: every ancestor of a branch or tag stays. --keep-last and
    --keep-since drop older history; the cut is recorded, so `lockgate log` ends there and
    `lockgate store verify` passes. A pack still in use but mostly dead is rewritten with only
    its live chunks (--repack-threshold, --no-repack).

    Examples: lockgate store gc --dry-run; lockgate store gc --grace 0s --json;
    lockgate store gc --keep-last 20 --keep-since 90d --dry-run
    """
    s = open_store(store)
    grace_seconds = _seconds(grace, "--grace") or 0.0
    ledger_seconds = _seconds(ledger_retention, "--ledger-retention")
    wait_seconds = _seconds(wait, "--wait") or 0.0
    since = None
    if keep_since is not None:
        try:
            since = parse_time(keep_since).timestamp()
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--keep-since") from None
    retention = HistoryRetention(keep_last=keep_last, keep_since=since)
    show = not as_json and err.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                  disable=not show, transient=True) as bar:  # fmt: skip
        task = bar.add_task("sweeping" if not dry_run else "counting", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        waiting_for: set[str] = set()

        def waiting(writers: list[Lease]) -> None:
            # Said once per set of writers, not every poll: what the collection is waiting for.
            holders = {w.holder for w in writers}
            if holders != waiting_for:
                waiting_for.clear()
                waiting_for.update(holders)
                err.print(f"waiting for {len(writers)} push(es) to commit (--wait {wait}): "
                          + ", ".join(w.describe() for w in writers[:5]))  # fmt: skip

        report = s.gc(grace_seconds=grace_seconds, dry_run=dry_run, ledger_retention_seconds=ledger_seconds,
                      wait_for_writers=wait_seconds, progress=advance, retention=retention,
                      repack_threshold=None if no_repack else repack_threshold, on_wait=waiting)  # fmt: skip
    if as_json:
        print_json(report.as_dict())
        return
    verb = "would free" if dry_run else "freed"
    out.print(
        f"[bold green]{verb}[/] {human_bytes(report.bytes_freed)}: "
        + ", ".join(f"{s.count} {kind} ({human_bytes(s.bytes)})" for kind, s in report.freed.items())
    )
    out.print(
        f"  reachable: {report.commits} commits, {report.manifests} files, {report.live_packs} packs "
        f"({human_bytes(report.live_bytes)}) from {report.roots} refs and ledger entries"
    )
    if report.kept_young.count:
        out.print(
            f"  kept {report.kept_young.count} unreachable keys ({human_bytes(report.kept_young.bytes)}) younger "
            f"than --grace {grace}"
        )
    if report.history_cuts:
        out.print(f"  history cut behind {report.history_cuts} commits by the retention policy (recorded)")
    if report.repacked_packs:
        out.print(
            f"  {'would repack' if dry_run else 'repacked'} {report.repacked_packs} packs at least "
            f"{report.repack_threshold:.0%} dead, writing {human_bytes(report.repacked_live_bytes)} of live chunks"
        )
    kept_whole = report.partly_dead_packs - report.repacked_packs
    if kept_whole:
        threshold = report.repack_threshold
        why = "--no-repack" if threshold is None else f"less dead than --repack-threshold {threshold:g}"
        out.print(f"  {kept_whole} packs are partly dead and kept whole ({why})")
