"""``lockgate resolve``, ``lockgate fetch`` and ``lockgate import``: the loader from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lockgate.gateway.cli.console import byte_progress, human_bytes, out, print_json
from lockgate.gateway.settings import Settings
from lockgate.gateway.wiring import build_loader, store_opener
from lockgate.store import Store, parse_uri

if TYPE_CHECKING:
    from lockgate.loader.model_loader import ModelLoader
    from lockgate.loader.resolved import ResolvedModel

StoreOption = Annotated[str | None, typer.Option("--store", help="Store root. Env: LOCKGATE_STORE.")]
TrackingOption = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow tracking/registry URI. Env: MLFLOW_TRACKING_URI.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
URI_HELP = (
    "models:/NAME/STAGE, models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest, "
    "models:/m-ID, runs:/RUN/PATH or lockgate://REPO@REF/PATH"
)


def settings_for(store: str | None, tracking_uri: str | None) -> Settings:
    """The settings, with the command's ``--store`` and ``--tracking-uri`` over the environment's."""
    settings = Settings()
    updates: dict[str, Any] = {}
    if store:
        updates["store"] = store
    if tracking_uri:
        updates["tracking_uri"] = tracking_uri
    return settings.model_copy(update=updates)


def _lineage_table(resolved: ResolvedModel) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        ("model", f"{resolved.name or '-'} version {resolved.version or '-'}"),
        ("follows", f"{resolved.uri} ({resolved.reference}{', moves' if resolved.moves else ', fixed'})"),
        ("weights", resolved.weights.uri),
        ("weights commit", resolved.weights_commit or "- (not in the store; `lockgate import` pins it)"),
        ("dataset commit", resolved.dataset_commit or "- (no dataset lineage recorded)"),
        ("run", resolved.run_id or "-"),
        ("code commit", resolved.code_commit or "-"),
    ]
    if resolved.flavors:
        rows.append(("flavors", ", ".join(resolved.flavors)))
    for label, value in rows:
        table.add_row(f"[bold]{label}[/]", value)
    for note in resolved.notes:
        table.add_row("[yellow]note[/]", note)
    return table


def bytes_to_fetch(loader: ModelLoader, settings: Settings, resolved: ResolvedModel) -> int:
    """The size of the progress bar: the version's bytes, when it is in the store and not cached."""
    if not resolved.weights.in_store or loader.cache.is_complete(resolved.weights.cache_key):
        return 0
    files = store_opener(settings)().list_files(str(resolved.weights_commit), resolved.weights.path)
    return sum(e.size for e in files.values())


def resolve(
    model_uri: Annotated[str, typer.Argument(help=URI_HELP, show_default=False)],
    store: StoreOption = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show which immutable version a model URI names now, with its lineage. Fetches nothing."""
    resolved = build_loader(settings_for(store, tracking_uri)).resolve(model_uri)
    if as_json:
        print_json(resolved.as_dict())
    else:
        out.print(_lineage_table(resolved))


def fetch(
    model_uri: Annotated[str, typer.Argument(help=URI_HELP, show_default=False)],
    store: StoreOption = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resolve, fetch only the chunks the local cache lacks, load and warm up the model.

    Prints the version, its commits and the bytes fetched versus reused. The cache is
    LOCKGATE_CACHE_DIR (default .lockgate/cache), bounded by LOCKGATE_CACHE_MAX_BYTES.
    """
    settings = settings_for(store, tracking_uri)
    loader = build_loader(settings)
    resolved = loader.resolve(model_uri)
    total = bytes_to_fetch(loader, settings, resolved)
    with byte_progress(f"fetching {resolved.name or model_uri}", total, enabled=not as_json) as advance:
        servable = loader.load(resolved, progress=advance)
    report = servable.report
    if as_json:
        print_json({"resolved": servable.resolved.as_dict(), "load": report.as_dict(), "flavor": servable.model.flavor})
        return
    out.print(_lineage_table(servable.resolved))
    f = report.fetch
    out.print(
        f"[bold green]ready[/] ({servable.model.flavor}) in {report.total_seconds:.2f}s: "
        f"{human_bytes(f.bytes_total)} total, {human_bytes(f.bytes_fetched)} fetched, "
        f"{human_bytes(f.bytes_reused)} reused{' (already cached)' if f.cached else ''}"
    )


def materialize(
    model_uri: Annotated[str, typer.Argument(help=URI_HELP, show_default=False)],
    destination: Annotated[
        str, typer.Argument(help="Directory to write the version's files and lineage to.", show_default=False)
    ],
    store: StoreOption = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write one version's verified files, and its lineage, into a directory.

    This is lockgate as KServe's storage initializer (kserve/cluster-storage-container.yaml):
    KServe runs `lockgate materialize STORAGE_URI /mnt/models` before the predictor starts,
    and the predictor runs `lockgate serve /mnt/models`, which checks every file against the
    lineage file and serves the version under its weights and dataset commits, with no
    registry or store to reach. Fetches only the chunks the cache lacks, like `lockgate fetch`.

    Example: lockgate materialize models:/fraud@champion /mnt/models
    """
    from lockgate.loader.materialized_copy import write_copy

    settings = settings_for(store, tracking_uri)
    loader = build_loader(settings)
    resolved = loader.resolve(model_uri)
    total = bytes_to_fetch(loader, settings, resolved)
    with byte_progress(f"fetching {resolved.name or model_uri}", total, enabled=not as_json) as advance:
        directory, report = loader.cache.materialize(store_opener(settings), resolved.weights, progress=advance)
    meta = loader.cache.metadata(resolved.weights.cache_key)
    written = write_copy(directory, meta["files"], resolved, Path(destination))
    signed = _copy_signature(store_opener(settings)(), resolved, Path(destination))
    if as_json:
        print_json({"resolved": resolved.as_dict(), "fetch": report.as_dict(), "destination": destination,
                    "signature": signed})  # fmt: skip
        return
    out.print(_lineage_table(resolved))
    out.print(
        f"[bold green]materialized[/] {len(meta['files'])} files ({human_bytes(written)}) in {destination}, "
        f"{human_bytes(report.bytes_fetched)} fetched{'; its signature as model.sig' if signed else ''}; "
        f"serve it with: lockgate serve {destination}"
    )


def _copy_signature(store: Store, resolved: ResolvedModel, destination: Path) -> bool:
    """The signature attached to the version, beside its files as ``model.sig`` (what
    ``model_signing verify`` reads); a stale one from an earlier copy goes. True if it was signed."""
    from lockgate.loader.signing import attached

    target = destination / attached.SIGNATURE_FILE
    bundle = attached.read(store, resolved.weights) if resolved.weights.commit else None
    if bundle is None:
        target.unlink(missing_ok=True)
        return False
    target.write_bytes(bundle)
    return True


def import_(
    model_uri: Annotated[str, typer.Argument(help=URI_HELP, show_default=False)],
    destination: Annotated[str, typer.Argument(help="lockgate://REPO@BRANCH/PATH to copy it to.", show_default=False)],
    store: StoreOption = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a version stored in MLflow's own artifact store into the lockgate store, and pin
    the registry version to that commit (tag lockgate.uri), so later deploys of it dedup."""
    from lockgate.loader.importer import import_model

    settings = settings_for(store, tracking_uri)
    loader = build_loader(settings)
    result = import_model(loader.resolver, store_opener(settings, create=True)(), model_uri, parse_uri(destination))
    if as_json:
        print_json(
            {
                "pinned_uri": result.pinned_uri,
                "already_in_store": result.already_in_store,
                "push": result.push.as_dict() if result.push else None,
            }
        )
        return
    if result.already_in_store:
        out.print(f"{model_uri} is already in the store at {result.pinned_uri}")
        return
    assert result.push is not None
    out.print(f"[bold green]imported[/] {model_uri} -> {result.pinned_uri}")
    out.print(f"  {human_bytes(result.push.bytes_total)} total, {human_bytes(result.push.bytes_new)} new")
