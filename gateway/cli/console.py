"""Shared terminal output: one console for results, one for messages, and byte progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

# Piped output is whole: no 80-column wrapping or truncation, one record per line, full ids.
_WIDE = 1_000_000
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _WIDE)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else _WIDE)


def short_id(commit: str | None) -> str:
    """A commit id as a person reads it in a terminal (16 characters, which every command
    accepts back as a prefix), or whole when the output goes to a pipe or a file."""
    if not commit:
        return "-"
    return commit[:16] if out.is_terminal else commit


# Below this, a bar flickers for a blink and only adds noise.
_PROGRESS_THRESHOLD = 8 * 1024 * 1024


@contextmanager
def byte_progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield a callback that advances a transfer bar by n bytes; a no-op for small or quiet jobs."""
    if not enabled or total < _PROGRESS_THRESHOLD or not err.is_terminal:
        yield lambda _n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_rate(n_bytes: int, seconds: float) -> str:
    """A transfer rate such as ' (123 MB/s)', or '' where one would be noise (tiny or instant)."""
    if seconds <= 0 or n_bytes < 1024 * 1024:
        return ""
    rate = n_bytes / seconds
    return f" ({rate / 1e9:.1f} GB/s)" if rate >= 1e9 else f" ({rate / 1e6:.0f} MB/s)"


def print_json(data: object) -> None:
    """One JSON document on stdout, for scripts (`--json`)."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
