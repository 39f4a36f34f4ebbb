"""Reading the inference log back from the store: its committed windows, and the live score
computed from the log itself (answers joined to the labels committed beside them), across every
replica that wrote to it. ``lockgate inference ls`` and ``lockgate inference score`` print these.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from lockgate.gateway.serving.inference_log import INFERENCE_REPO
from lockgate.gateway.serving.logged_rows import PREDICTION
from lockgate.monitoring.live_score import scores
from lockgate.store import Store
from lockgate.store.errors import NotFoundError, PathNotFoundError

KEY = ["lockgate_request_id", "lockgate_row"]
_FILE_META = ["lockgate_time", "lockgate_role", "lockgate_model_version", "lockgate_weights_commit"]


class NoInferenceLogError(NotFoundError):
    """The endpoint has no committed inference log (never logged, or another store)."""


@dataclass(frozen=True)
class LoggedFile:
    commit: str  # the commit that added the file (its window's commit)
    uri: str
    rows: int
    version: str
    weights_commit: str
    role: str
    start: str  # the first and last row's time, ISO 8601 UTC
    end: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def head_of(store: Store, name: str) -> str:
    try:
        return store.resolve(INFERENCE_REPO, name)
    except NotFoundError as exc:
        raise NoInferenceLogError(
            f"endpoint {name!r} has no inference log in this store (branch {name!r} of repository "
            f"{INFERENCE_REPO!r}): serve it with --inference-log-sample above 0"
        ) from exc


def logged_files(store: Store, name: str) -> list[LoggedFile]:
    """Every committed window file of endpoint ``name``, oldest first."""
    head = head_of(store, name)
    out = []
    for path in _files(store, head, "windows"):
        table = pq.read_table(io.BytesIO(store.read_file(head, path)), columns=_FILE_META)
        frame = table.to_pandas()
        times = frame["lockgate_time"]
        out.append(
            LoggedFile(
                commit=store.last_commit_touching(INFERENCE_REPO, head, path),
                uri=f"lockgate://{INFERENCE_REPO}@{head}/{path}",
                rows=table.num_rows,
                version=",".join(sorted(set(frame["lockgate_model_version"]))),
                weights_commit=",".join(sorted(set(frame["lockgate_weights_commit"]))),
                role=",".join(sorted(set(frame["lockgate_role"]))),
                start=times.min().isoformat() if len(times) else "",
                end=times.max().isoformat() if len(times) else "",
            )
        )
    return out


def _files(store: Store, head: str, folder: str) -> list[str]:
    """The Parquet files under ``folder`` (none before its first commit: labels come later)."""
    try:
        return sorted(path for path in store.list_files(head, folder) if path.endswith(".parquet"))
    except PathNotFoundError:
        return []


def _read_all(store: Store, head: str, folder: str) -> pd.DataFrame:
    frames = [pd.read_parquet(io.BytesIO(store.read_file(head, path))) for path in _files(store, head, folder)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def live_scores(store: Store, name: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Per version and role: the answers logged (since ``since``), those with a label, and
    their scores. The latest label of a row counts."""
    head = head_of(store, name)
    answers = _read_all(store, head, "windows")
    if answers.empty or PREDICTION not in answers:
        return []
    answers = answers[answers[PREDICTION].notna()]
    if since is not None:
        answers = answers[answers["lockgate_time"] >= pd.Timestamp(since)]
    labels = _read_all(store, head, "labels")
    if not labels.empty:
        labels = labels.sort_values("lockgate_time").drop_duplicates(KEY, keep="last")[[*KEY, "lockgate_label"]]
        joined = answers.merge(labels, on=KEY, how="left")
    else:
        joined = answers.assign(lockgate_label=None)
    out = []
    for (version, role), group in joined.groupby(["lockgate_model_version", "lockgate_role"], sort=True):
        labelled = group[group["lockgate_label"].notna()]
        pairs = zip(labelled[PREDICTION].tolist(), labelled["lockgate_label"].tolist(), strict=True)
        out.append(
            {
                "version": version,
                "role": role,
                "answers": len(group),
                "labelled": len(labelled),
                "scores": scores(pairs),
            }
        )
    return out


def served_data(store: Store, name: str) -> dict[str, dict[str, Any]]:
    """Per model version: the inference-log commits that hold rows it answered, their window span
    and rows (a commit holding several versions counts its rows once per version: an upper
    bound). Empty when the endpoint has no log."""
    try:
        history = store.log(INFERENCE_REPO, head_of(store, name))
    except NotFoundError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for commit_id, commit in reversed(history):  # oldest first
        meta = commit.metadata
        versions = [v for v in meta.get("lockgate.versions", "").split(",") if v]
        for version in versions:
            entry = out.setdefault(version, {"commits": [], "first": None, "last": None, "rows": 0})
            entry["commits"].append(commit_id)
            entry["first"] = entry["first"] or meta.get("lockgate.window_start")
            entry["last"] = meta.get("lockgate.window_end") or entry["last"]
            entry["rows"] += int(meta.get("lockgate.rows", "0") or 0)
    return out
