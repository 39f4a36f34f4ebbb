"""Serve only what a trusted key signed: OpenSSF model signatures over the weights commit.

Against a real store and registry, a real ``lockgate serve`` and the ``model-signing`` package's
own CLI:

- ``lockgate store sign`` attaches a signature without changing the weights commit;
- with ``LOCKGATE_REQUIRE_SIGNATURE=true``, a signed version serves and shows its signer; an
  unsigned one, one signed by another key, one carrying a signature that is not its own, and one
  whose pack was altered after signing are refused at deploy and at follow, with the endpoint
  still serving its previous version, 0 failed requests under load during each refusal, the
  refusal in the ledger and in ``lockgate_signature_refusals_total``;
- ``model_signing verify`` accepts a ``lockgate materialize`` output of a signed version, and
  refuses it after a byte changes;
- a restart reuses the verdict only while the files are provably the ones verified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lockgate.gateway.control.ledger import Ledger
from lockgate.gateway.settings import Settings
from lockgate.gateway.wiring import store_opener
from lockgate.loader.resolved import WeightsLocation
from lockgate.loader.signing import attached
from lockgate.loader.signing.check import SignatureChecker, SignatureRefusedError
from lockgate.loader.signing.policy import MISMATCH, UNSIGNED, UNTRUSTED, PolicyError, load_policy
from lockgate.store import Store
from tests.registry_helpers import Registry, registry_at, weights
from tests.servers import Server, start_lockgate

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def make_key(folder: Path, name: str) -> tuple[Path, Path]:
    """An EC P-256 key pair as PEM files: (private, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def lockgate(registry: Registry, *args: str, cache: str = "sign-cache") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **registry.gateway_env(LOCKGATE_CACHE_DIR=str(registry.workdir / cache)),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run([str(VENV_BIN / "lockgate"), *args], capture_output=True, text=True, env=env,
                          cwd=registry.workdir, timeout=300, check=False)  # fmt: skip


def weights_of(registry: Registry, version: str) -> WeightsLocation:
    from lockgate.loader.registry import Resolver

    store = Store.open(str(registry.store_root))
    resolver = Resolver(lambda: store, tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    return resolver.resolve(f"models:/signed/{version}").weights


def sign_in_process(store: Store, workdir: Path, location: WeightsLocation, key: Path) -> None:
    """What ``lockgate store sign`` does, without a process: materialize, sign, attach."""
    from lockgate.loader.cache import ModelCache
    from lockgate.loader.signing.signer import SigningMethod, signature_bundle

    directory, _ = ModelCache(workdir / "sign-cache-inproc", 10**10).materialize(lambda: store, location)
    method = SigningMethod(private_key=key)
    attached.attach(store, location, signature_bundle(directory, method), signer=method.describe())


@pytest.fixture(scope="module")
def signed_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Versions 1 (signed by the trusted key), 2 (unsigned), 3 (signed by another key), 4 (carrying
    version 1's signature), 5 (signed, then a byte of its pack flipped) and 6 (signed)."""
    workdir = tmp_path_factory.mktemp("signing")
    trusted_key, trusted_pub = make_key(workdir, "trusted")
    other_key, _ = make_key(workdir, "other")
    packs: dict[int, set[Path]] = {}
    with registry_at(workdir) as registry:
        for seed in range(1, 7):
            registry.log_weights_model("signed", weights(seed, rows=512))
            packs[seed] = set((registry.store_root / "packs").rglob("*.pack"))
    # Version 1 through the command a user types; the others through the same code in process
    # (each CLI start costs seconds of imports).
    result = lockgate(registry, "store", "sign", "models:/signed/1", "--key", str(trusted_key))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signed" in result.stdout
    store = Store.open(str(registry.store_root))
    for version, key in (("3", other_key), ("5", trusted_key), ("6", trusted_key)):
        sign_in_process(store, workdir, weights_of(registry, version), key)
    # Version 4 carries version 1's signature: a valid signature by the trusted key, of other files.
    attached.attach(store, weights_of(registry, "4"), attached.read(store, weights_of(registry, "1")) or b"",
                    signer="copied")  # fmt: skip
    # Version 5's pack altered after signing (its weights are unique, so the pack is its alone).
    packs_5 = sorted(packs[5] - packs[4], key=lambda p: p.stat().st_size)
    target = packs_5[-1] if packs_5 else None
    yield {"registry": registry, "trusted_pub": trusted_pub, "pack_5": target, "workdir": workdir}


def test_signing_attaches_without_changing_the_weights_commit(signed_registry: dict[str, Any]) -> None:
    registry: Registry = signed_registry["registry"]
    store = Store.open(str(registry.store_root))
    location = weights_of(registry, "1")
    assert location.commit and attached.read(store, location) is not None
    # The registry still names the same weights commit; the signature lives in its own repository.
    assert weights_of(registry, "1").commit == location.commit
    assert attached.read(store, weights_of(registry, "2")) is None
    head = store.resolve("lockgate-signatures", "main")
    assert any(name.endswith("model.sig") for name in store.list_files(head))
    from lockgate.store.errors import ProtectedRefError

    with pytest.raises(ProtectedRefError, match="model signatures"):
        store.delete_branch("lockgate-signatures", "main", force=True)


class Load:
    """Requests in a loop against one endpoint while a refusal happens; counts failures."""

    def __init__(self, url: str) -> None:
        self.url, self.ok, self.failed = url, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                answer = client.post(f"{self.url}/endpoints/signed/invocations", json=body)
                if answer.status_code == 200:
                    self.ok += 1
                else:
                    self.failed.append((answer.status_code, answer.text[:200]))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(10)


def refusals(url: str) -> dict[str, float]:
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("lockgate_signature_refusals_total{") and 'endpoint="signed"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            found[reason] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.fixture(scope="module")
def strict_gateway(signed_registry: dict[str, Any]) -> Iterator[Server]:
    registry: Registry = signed_registry["registry"]
    env = registry.gateway_env(LOCKGATE_TRUSTED_SIGNERS=str(signed_registry["trusted_pub"]),
                               LOCKGATE_REQUIRE_SIGNATURE="true", LOCKGATE_FOLLOW_INTERVAL="0.3")  # fmt: skip
    gateway = start_lockgate(registry.workdir, env, "models:/signed/1", ready_path="/ready")
    yield gateway
    gateway.stop()


def test_a_signed_version_serves_and_shows_its_signer(strict_gateway: Server) -> None:
    endpoint = httpx.get(f"{strict_gateway.url}/endpoints/signed").json()
    assert endpoint["version"] == "1"
    signature = endpoint["signature"]
    assert signature["ok"] is True and signature["signer"].startswith("key trusted.pub"), signature
    answer = httpx.post(f"{strict_gateway.url}/endpoints/signed/invocations",
                        json={"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}})  # fmt: skip
    assert answer.status_code == 200 and answer.headers["X-Lockgate-Signer"] == signature["signer"]


@pytest.mark.parametrize(
    ("version", "reason", "words"),
    [("2", UNSIGNED, "carries no signature"), ("3", UNTRUSTED, "not by a trusted signer"),
     ("4", MISMATCH, "no longer match their signature")],
)  # fmt: skip
def test_a_bad_signature_is_refused_at_deploy_and_the_endpoint_keeps_serving(
    strict_gateway: Server, signed_registry: dict[str, Any], version: str, reason: str, words: str
) -> None:
    url = strict_gateway.url
    before = refusals(url).get(reason, 0.0)
    with Load(url) as load:
        answer = httpx.post(f"{url}/admin/endpoints", json={"name": "signed", "model_uri": f"models:/signed/{version}"},
                            timeout=120)  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["message"] and "LOCKGATE_REQUIRE_SIGNATURE" in answer.json()["message"]
    assert load.failed == [] and load.ok > 0, load.failed[:3]
    endpoint = httpx.get(f"{url}/endpoints/signed").json()
    assert endpoint["version"] == "1" and endpoint["status"] == "ready"
    assert refusals(url).get(reason, 0.0) == before + 1
    registry: Registry = signed_registry["registry"]
    events = Ledger(store_opener(Settings(store=str(registry.store_root)))).events()
    failed = [e for e in events if e.endpoint == "signed" and e.action == "failed" and e.to and e.to.version == version]
    assert failed and words in (failed[-1].error or ""), [e.error for e in events][-3:]


def test_a_pack_altered_after_signing_is_refused(strict_gateway: Server, signed_registry: dict[str, Any]) -> None:
    pack: Path | None = signed_registry["pack_5"]
    assert pack is not None, "version 5 has a pack of its own"
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    url = strict_gateway.url
    with Load(url) as load:
        answer = httpx.post(f"{url}/admin/endpoints", json={"name": "signed", "model_uri": "models:/signed/5"},
                            timeout=120)  # fmt: skip
    # The store's own hashes catch it before the signature is even read: nothing altered is served.
    assert answer.status_code == 502 and answer.json()["error_code"] == "DATA_LOSS", answer.text
    assert load.failed == [] and load.ok > 0
    assert httpx.get(f"{url}/endpoints/signed").json()["version"] == "1"


def test_follow_refuses_each_bad_version_and_moves_to_a_good_one(
    strict_gateway: Server, signed_registry: dict[str, Any]
) -> None:
    """The alias moves to an unsigned version, one signed by another key, one carrying another
    version's signature and one whose pack was altered after signing: follow refuses each, the
    endpoint keeps version 1 with 0 failed requests under load, and then follows to a signed one."""
    registry: Registry = signed_registry["registry"]
    url = strict_gateway.url
    client = registry.client
    client.set_registered_model_alias("signed", "champion", "1")
    answer = httpx.post(f"{url}/admin/endpoints", json={"name": "signed", "model_uri": "models:/signed@champion",
                                                        "follow": True}, timeout=120)  # fmt: skip
    assert answer.status_code == 200, answer.text
    for version, reason, words in (("2", UNSIGNED, "carries no signature"), ("3", UNTRUSTED, "not by a trusted signer"),
                                   ("4", MISMATCH, "no longer match"), ("5", None, "failed verification")):  # fmt: skip
        before = refusals(url).get(reason or "", 0.0)
        with Load(url) as load:
            client.set_registered_model_alias("signed", "champion", version)
            deadline = time.monotonic() + 30
            while words not in (httpx.get(f"{url}/endpoints/signed").json()["last_error"] or ""):
                assert time.monotonic() < deadline, f"follow did not try (and refuse) version {version}"
                time.sleep(0.2)
        endpoint = httpx.get(f"{url}/endpoints/signed").json()
        assert endpoint["version"] == "1" and endpoint["status"] == "ready", endpoint
        assert load.failed == [] and load.ok > 0, (version, load.failed[:3])
        if reason is not None:
            assert refusals(url).get(reason, 0.0) == before + 1, version
    client.set_registered_model_alias("signed", "champion", "6")  # signed by the trusted key
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/endpoints/signed").json()["version"] != "6" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{url}/endpoints/signed").json()["version"] == "6"


def test_model_signings_own_cli_verifies_a_materialized_copy(signed_registry: dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = signed_registry["registry"]
    copy = tmp_path / "copy"
    result = lockgate(registry, "materialize", "models:/signed/1", str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (copy / "model.sig").is_file() and (copy / "lockgate-lineage.json").is_file()
    command = [str(VENV_BIN / "model_signing"), "verify", "key", str(copy), "--signature", str(copy / "model.sig"),
               "--public_key", str(signed_registry["trusted_pub"])]  # fmt: skip
    accepted = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    victim = next(p for p in sorted(copy.rglob("*")) if p.is_file() and p.name.endswith(".npy"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    refused = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert refused.returncode != 0, "a changed byte must fail model_signing verify"
    assert "mismatch" in (refused.stdout + refused.stderr).lower()


def test_the_verdict_is_reused_only_while_the_files_are_the_ones_verified(
    signed_registry: dict[str, Any], tmp_path: Path
) -> None:
    """Verify once per commit: the second load reuses the verdict, a touched file verifies again."""
    from lockgate.loader.cache import ModelCache

    registry: Registry = signed_registry["registry"]
    store = Store.open(str(registry.store_root))
    policy = load_policy([str(signed_registry["trusted_pub"])], required=True)
    checker = SignatureChecker(policy, lambda: store)
    cache = ModelCache(tmp_path / "cache", 10**10)
    from lockgate.loader.registry import Resolver

    resolved = Resolver(lambda: store, tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri).resolve(
        "models:/signed/1"
    )
    directory, _ = cache.materialize(lambda: store, resolved.weights)
    derived = cache.derived_dir(resolved.weights.cache_key)
    first = checker.check(resolved, directory, derived)
    assert first is not None and first.ok and not first.from_cache
    again = checker.check(resolved, directory, derived)
    assert again is not None and again.ok and again.from_cache, "the same files: the verdict is reused"
    victim = next(p for p in directory.rglob("*.npy"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))  # a file changed under the cache since it was verified
    with pytest.raises(SignatureRefusedError, match="no longer match"):
        checker.check(resolved, directory, derived)
    # Unsigned under a policy that does not require signatures: reported, not refused.
    lenient = SignatureChecker(load_policy([str(signed_registry["trusted_pub"])], required=False), lambda: store)
    unsigned = lenient.check(Resolver(lambda: store, tracking_uri=registry.tracking_uri,
                                      registry_uri=registry.tracking_uri).resolve("models:/signed/2"),
                             directory, None)  # fmt: skip
    assert unsigned is not None and not unsigned.ok and unsigned.refusal == UNSIGNED


def test_a_policy_that_cannot_work_stops_the_gateway_with_one_line(
    signed_registry: dict[str, Any], tmp_path: Path
) -> None:
    not_pem = tmp_path / "key.txt"
    not_pem.write_text("hello")
    with pytest.raises(PolicyError, match="not a PEM public key or certificate"):
        load_policy([str(not_pem)], required=True)
    registry: Registry = signed_registry["registry"]
    for extra, words in (
        ({"LOCKGATE_TRUSTED_SIGNERS": str(not_pem)}, "not a PEM public key"),
        ({"LOCKGATE_REQUIRE_SIGNATURE": "true"}, "needs LOCKGATE_TRUSTED_SIGNERS"),
    ):
        env = {**os.environ, **registry.gateway_env(**extra), "PYTHONPATH": str(ROOT)}
        result = subprocess.run([str(VENV_BIN / "lockgate"), "serve", "models:/signed/1", "--port", "0"],
                                capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
        assert result.returncode == 1 and words in result.stderr, result.stderr[-1500:]
        assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)


def _certificate(subject: str, key: Any, issuer: Any = None, issuer_key: Any = None, *, ca: bool) -> Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


def test_a_certificate_chain_signature_is_trusted_through_its_root(tmp_path: Path) -> None:
    """--certificate and --chain: a leaf signed by a CA; trusting the CA's certificate trusts the
    signature, trusting another CA does not."""
    from lockgate.loader.signing.policy import verify_directory
    from lockgate.loader.signing.signer import SigningMethod, sign_directory

    def pem(certificate: Any) -> bytes:
        return bytes(certificate.public_bytes(serialization.Encoding.PEM))

    ca_key, other_ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("lockgate test CA", ca_key, ca=True)
    other_ca = _certificate("another CA", other_ca_key, ca=True)
    leaf = _certificate("model signer", leaf_key, ca, ca_key, ca=False)
    for name, data in (("ca.pem", pem(ca)), ("other-ca.pem", pem(other_ca)), ("leaf.pem", pem(leaf))):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    )  # fmt: skip
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "weights.bin").write_bytes(os.urandom(4096))
    signature = tmp_path / "model.sig"
    method = SigningMethod(private_key=tmp_path / "leaf.key", certificate=tmp_path / "leaf.pem",
                           chain=(tmp_path / "ca.pem",))  # fmt: skip
    sign_directory(model, method, signature)
    trusted = verify_directory(model, signature, load_policy([str(tmp_path / "ca.pem")], required=True))
    assert trusted.ok and trusted.signer is not None and trusted.signer.startswith("certificate ca.pem"), trusted
    other = verify_directory(model, signature, load_policy([str(tmp_path / "other-ca.pem")], required=True))
    assert not other.ok and other.refusal == UNTRUSTED, other
    (model / "weights.bin").write_bytes(os.urandom(4096))
    changed = verify_directory(model, signature, load_policy([str(tmp_path / "ca.pem")], required=True))
    assert not changed.ok and changed.refusal == MISMATCH, changed
