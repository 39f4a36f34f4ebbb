"""The signature check a version passes before it may serve: once per commit.

``SignatureChecker.check`` finds the signature attached to the version's weights commit (or, for
a ``lockgate materialize`` copy, the ``model.sig`` beside its files), verifies the version's
files against it with each trusted signer, and returns the verdict. Under
``LOCKGATE_REQUIRE_SIGNATURE=true`` a verdict that is not ``ok`` refuses the load
(``SignatureRefusedError``); otherwise it is only reported.

Verifying hashes every file (SHA-256, the format's default), so a passed verdict is kept in the
version's derived directory and reused by the next load of the same version only when it can be
proven that the files are the ones verified: the same signature bytes, a signer still trusted,
the same per-file BLAKE3 digests in the cache's record of the version (the store's hashes, which
the cache checked every byte against), and every file's size, modification time and inode
unchanged since the verification. Anything else verifies again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from lockgate.loader.cache import META
from lockgate.loader.errors import ModelLoadError
from lockgate.loader.resolved import ResolvedModel
from lockgate.loader.signing import attached
from lockgate.loader.signing.policy import UNSIGNED, SignaturePolicy, SignatureVerdict, verify_directory
from lockgate.store import Store

VERDICT_VERSION = 1


class SignatureRefusedError(ModelLoadError):
    """The version is unsigned, signed by an untrusted key, or its files do not match its signature."""

    def __init__(self, message: str, verdict: SignatureVerdict) -> None:
        super().__init__(message)
        self.verdict = verdict


class SignatureChecker:
    def __init__(self, policy: SignaturePolicy, open_store: Callable[[], Store]) -> None:
        self.policy = policy
        self._open_store = open_store

    def check(self, resolved: ResolvedModel, directory: Path, derived: Path | None) -> SignatureVerdict | None:
        """The verdict on ``resolved``'s files in ``directory`` (None: signatures are not checked);
        raises ``SignatureRefusedError`` when the policy requires a signature and it fails."""
        if not self.policy.active:
            return None
        started = time.perf_counter()
        bundle = self._bundle(resolved)
        if bundle is None:
            verdict = SignatureVerdict(False, refusal=UNSIGNED, reason="the version carries no signature")
        else:
            verdict = self._verify(directory, bundle, derived)
        verdict.seconds = time.perf_counter() - started
        if not verdict.ok and self.policy.required:
            what = f"{resolved.name} version {resolved.version}" if resolved.version else resolved.uri
            raise SignatureRefusedError(
                f"{what} is refused: {verdict.reason} (LOCKGATE_REQUIRE_SIGNATURE=true)", verdict
            )
        return verdict

    def _bundle(self, resolved: ResolvedModel) -> bytes | None:
        if resolved.local_copy is not None:  # a materialized copy carries its signature beside its files
            beside = Path(resolved.local_copy) / attached.SIGNATURE_FILE
            return beside.read_bytes() if beside.is_file() else None
        return attached.read(self._open_store(), resolved.weights)

    def _verify(self, directory: Path, bundle: bytes, derived: Path | None) -> SignatureVerdict:
        digest = hashlib.sha256(bundle).hexdigest()
        record_file = derived / f"signature-{digest[:32]}.json" if derived is not None else None
        reused = _reuse(record_file, directory, digest, self.policy)
        if reused is not None:
            return reused
        with tempfile.TemporaryDirectory(prefix="lockgate-signature-") as scratch:
            signature = Path(scratch) / attached.SIGNATURE_FILE
            signature.write_bytes(bundle)
            verdict = verify_directory(directory, signature, self.policy)
        if verdict.ok and record_file is not None:
            _remember(record_file, directory, digest, verdict)
        return verdict


def _files_state(directory: Path) -> dict[str, Any] | None:
    """The cache's BLAKE3 of each file, and each file's size, mtime and inode now."""
    try:
        files = orjson.loads((directory / META).read_bytes())["files"]
        state = {}
        for name, entry in files.items():
            info = os.stat(directory / name)
            state[name] = [entry["blake3"], info.st_size, info.st_mtime_ns, info.st_ino]
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reuse(record_file: Path | None, directory: Path, digest: str, policy: SignaturePolicy) -> SignatureVerdict | None:
    if record_file is None:
        return None
    try:
        record = orjson.loads(record_file.read_bytes())
    except (OSError, ValueError):
        return None
    state = _files_state(directory)
    trusted = {signer.name for signer in policy.trusted}
    if (
        record.get("version") != VERDICT_VERSION
        or record.get("signature") != digest
        or record.get("signer") not in trusted
        or state is None
        or record.get("files") != state
    ):
        return None
    return SignatureVerdict(True, signer=record["signer"], from_cache=True)


def _remember(record_file: Path, directory: Path, digest: str, verdict: SignatureVerdict) -> None:
    state = _files_state(directory)
    if state is None:  # not a cache version (a directory of its own): nothing to prove a reuse with
        return
    record = {"version": VERDICT_VERSION, "signature": digest, "signer": verdict.signer, "files": state}
    try:
        tmp = record_file.with_name(f".{record_file.name}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(record))
        tmp.replace(record_file)
    except OSError:
        return  # the next load verifies again
