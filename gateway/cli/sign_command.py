"""``lockgate store sign``: sign a version's model directory in the OpenSSF model-signing format
and attach the signature to its weights commit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lockgate.gateway.cli.console import byte_progress, out, print_json
from lockgate.gateway.cli.model_commands import (
    URI_HELP,
    JsonOption,
    StoreOption,
    TrackingOption,
    bytes_to_fetch,
    settings_for,
)
from lockgate.gateway.wiring import build_loader, store_opener


def sign(
    model_uri: Annotated[str, typer.Argument(help=URI_HELP, show_default=False)],
    key: Annotated[
        Path | None, typer.Option("--key", help="PEM private key (elliptic curve) to sign with.", show_default=False)
    ] = None,
    password: Annotated[
        str | None, typer.Option("--password", help="The private key's password, if it has one.", show_default=False)
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option("--certificate", help="PEM signing certificate of --key: a certificate-chain signature."),
    ] = None,
    chain: Annotated[
        list[Path] | None, typer.Option("--chain", help="PEM certificates from the signing certificate to the root.")
    ] = None,
    sigstore: Annotated[
        bool, typer.Option("--sigstore", help="Sigstore keyless signing (needs a network and an OIDC login).")
    ] = False,
    store: StoreOption = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign one version's model files and attach the signature to its weights commit.

    The signature is an OpenSSF model-signing bundle (the `model-signing` package's format) over
    the version's files. It is attached to the weights commit without changing it, in the store's
    `lockgate-signatures` repository: pins, lineage and dedup stay as they are. A gateway with
    LOCKGATE_TRUSTED_SIGNERS set verifies it before the version takes traffic; with
    LOCKGATE_REQUIRE_SIGNATURE=true it serves nothing else. `lockgate materialize` writes it
    beside the files as model.sig, which `model_signing verify` checks unchanged.

    Example: lockgate store sign models:/fraud/3 --key signing-key.pem
    """
    from lockgate.loader.signing import attached
    from lockgate.loader.signing.signer import SigningMethod, signature_bundle

    method = SigningMethod(key, password, certificate, tuple(chain or ()), sigstore)
    settings = settings_for(store, tracking_uri)
    loader = build_loader(settings)
    resolved = loader.resolve(model_uri)
    if not resolved.weights.commit:
        raise typer.BadParameter(
            f"{model_uri} is not stored in lockgate's store (no weights commit); `lockgate import` it first",
            param_hint="MODEL_URI",
        )
    total = bytes_to_fetch(loader, settings, resolved)
    with byte_progress(f"fetching {resolved.name or model_uri}", total, enabled=not as_json) as advance:
        directory, _ = loader.cache.materialize(store_opener(settings), resolved.weights, progress=advance)
    bundle = signature_bundle(directory, method)
    signed_in = attached.attach(store_opener(settings)(), resolved.weights, bundle, signer=method.describe())
    where = attached.note_path(resolved.weights)
    if as_json:
        print_json({"resolved": resolved.as_dict(), "signature": where, "signatures_commit": signed_in,
                    "signer": method.describe(), "bytes": len(bundle)})  # fmt: skip
        return
    out.print(
        f"[bold green]signed[/] {resolved.name or model_uri} version {resolved.version or '-'} "
        f"(weights commit {resolved.weights.commit[:12]}) with {method.describe()}: "
        f"lockgate://lockgate-signatures@{signed_in[:12]}/{where}"
    )
