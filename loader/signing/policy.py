"""Which signatures lockgate trusts, and the verdict on one version.

``LOCKGATE_TRUSTED_SIGNERS`` names PEM files: public keys (a key-signed model) or certificates
(roots of a certificate-signed model's chain). ``LOCKGATE_REQUIRE_SIGNATURE=true`` makes a
signature by one of them a condition of serving. The verdict says who signed, or exactly why
the version is refused: unsigned, signed by a key lockgate does not trust, or files that no
longer match what was signed.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lockgate.loader.signing.signer import hashing_config

UNSIGNED = "unsigned"
UNTRUSTED = "untrusted"
MISMATCH = "mismatch"


@dataclass(frozen=True)
class TrustedSigner:
    path: Path
    kind: str  # "key" or "certificate"
    fingerprint: str  # sha256 of the PEM public key (what a key-signed bundle names as its hint)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.path.name} (sha256:{self.fingerprint[:16]})"


@dataclass(frozen=True)
class SignaturePolicy:
    trusted: tuple[TrustedSigner, ...] = ()
    required: bool = False

    @property
    def active(self) -> bool:
        """Whether signatures are checked at all: required, or trusted signers to name."""
        return self.required or bool(self.trusted)

    def describe(self) -> dict[str, Any]:
        return {"required": self.required, "trusted_signers": [s.name for s in self.trusted]}


@dataclass
class SignatureVerdict:
    ok: bool
    signer: str | None = None  # the trusted signer whose key verified it
    refusal: str | None = None  # UNSIGNED, UNTRUSTED or MISMATCH
    reason: str | None = None
    seconds: float = 0.0
    from_cache: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PolicyError(ValueError):
    """A trusted-signer file that cannot be read as a PEM public key or certificate."""


def load_policy(paths: list[str], *, required: bool) -> SignaturePolicy:
    return SignaturePolicy(tuple(_trusted(Path(p)) for p in paths if p.strip()), required)


def _trusted(path: Path) -> TrustedSigner:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"LOCKGATE_TRUSTED_SIGNERS: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if b"BEGIN CERTIFICATE" in data:
            public: Any = x509.load_pem_x509_certificate(data).public_key()
            kind = "certificate"
        else:
            public = serialization.load_pem_public_key(data)
            kind = "key"
    except ValueError as exc:
        raise PolicyError(f"LOCKGATE_TRUSTED_SIGNERS: {path} is not a PEM public key or certificate: {exc}") from exc
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return TrustedSigner(path, kind, hashlib.sha256(pem).hexdigest())


def verify_directory(directory: Path, signature: Path, policy: SignaturePolicy) -> SignatureVerdict:
    """Check ``directory`` against the bundle at ``signature`` with each trusted signer in turn."""
    from model_signing import verifying

    mismatch: str | None = None
    failures = []
    for signer in policy.trusted:
        config = verifying.Config().set_hashing_config(hashing_config())  # type: ignore[arg-type]
        if signer.kind == "key":
            config.use_elliptic_key_verifier(public_key=signer.path)
        else:
            config.use_certificate_verifier(certificate_chain=[signer.path])
        try:
            config.verify(directory, signature)
        except Exception as exc:  # model_signing raises ValueError and cryptography's errors alike
            text = f"{type(exc).__name__}: {exc}".strip()
            if "Signature mismatch" in text:
                mismatch = text
            failures.append(f"{signer.name}: {text[:200]}")
            continue
        return SignatureVerdict(True, signer=signer.name)
    if mismatch is not None:
        return SignatureVerdict(
            False, refusal=MISMATCH, reason=f"the files no longer match their signature ({mismatch[:300]})"
        )
    why = "; ".join(failures) if failures else "no trusted signers are configured (LOCKGATE_TRUSTED_SIGNERS)"
    return SignatureVerdict(False, refusal=UNTRUSTED, reason=f"the signature is not by a trusted signer ({why})")
