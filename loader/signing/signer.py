"""Signing a version's model directory in the OpenSSF model-signing format.

The directory is the version as the cache holds it; lockgate's own files in it (the version's
metadata, derived artifacts, a materialized copy's lineage file and the signature itself) are
recorded in the signature's manifest as ignored paths, so ``model_signing verify`` on a
``lockgate materialize`` output checks exactly the model's files and nothing else.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lockgate.loader.cache import DERIVED, META
from lockgate.loader.materialized_copy import LINEAGE_FILE
from lockgate.loader.signing.attached import SIGNATURE_FILE

# lockgate's files inside a version's directory: never part of what is signed.
LOCKGATE_FILES = (META, DERIVED, LINEAGE_FILE, SIGNATURE_FILE)


@dataclass(frozen=True)
class SigningMethod:
    """How to sign: a private key (EC, PEM), a private key with its certificate and chain, or
    Sigstore's keyless flow (it needs a network: an OIDC login and the public Rekor log)."""

    private_key: Path | None = None
    password: str | None = None
    certificate: Path | None = None
    chain: Sequence[Path] = field(default_factory=tuple)
    sigstore: bool = False

    def describe(self) -> str:
        if self.sigstore:
            return "sigstore (keyless)"
        if self.certificate is not None:
            return f"certificate {self.certificate.name}"
        return f"key {self.private_key.name if self.private_key else '?'}"


def hashing_config() -> object:
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=list(LOCKGATE_FILES), ignore_git_paths=True)


def sign_directory(directory: Path, method: SigningMethod, signature: Path) -> None:
    """Write a Sigstore bundle over ``directory``'s files to ``signature``."""
    from model_signing import signing

    config = signing.Config().set_hashing_config(hashing_config())  # type: ignore[arg-type]
    if method.sigstore:
        config.use_sigstore_signer()
    elif method.certificate is not None:
        if method.private_key is None:
            raise ValueError("a certificate signs with its private key: give --key too")
        config.use_certificate_signer(
            private_key=method.private_key, signing_certificate=method.certificate, certificate_chain=method.chain
        )
    elif method.private_key is not None:
        config.use_elliptic_key_signer(private_key=method.private_key, password=method.password)
    else:
        raise ValueError("nothing to sign with: give --key (and --certificate), or --sigstore")
    config.sign(directory, signature)


def signature_bundle(directory: Path, method: SigningMethod) -> bytes:
    """The bundle ``sign_directory`` writes, as bytes (what ``attached.attach`` keeps)."""
    with tempfile.TemporaryDirectory(prefix="lockgate-sign-") as scratch:
        signature = Path(scratch) / SIGNATURE_FILE
        sign_directory(directory, method, signature)
        return signature.read_bytes()
