"""The direct sqlite registry reader gives exactly MLflow's client's answer, or declines.

Every case runs the same resolve twice on one real MLflow sqlite registry: once read directly
(``direct_read=True``, the default) and once through MLflow's client (``direct_read=False``),
and the two resolved models must be equal field for field.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from lockgate.loader.artifact_repository import URI_TAG
from lockgate.loader.errors import ModelNotFoundError, VersionNotFoundError
from lockgate.loader.model_uri import parse_model_uri
from lockgate.loader.registry import Resolver
from lockgate.loader.sqlite_registry import KNOWN_SCHEMA_HEADS, Declined, SqliteRegistry, sqlite_path
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store
from tests.registry_helpers import Registry, weights


def _pair(registry: Registry) -> tuple[Resolver, Resolver]:
    direct = Resolver(open_configured_store, tracking_uri=registry.tracking_uri)
    through_mlflow = Resolver(open_configured_store, tracking_uri=registry.tracking_uri, direct_read=False)
    assert direct.direct is not None and through_mlflow.direct is None
    return direct, through_mlflow


def _assert_same(registry: Registry, uris: list[str]) -> None:
    direct, through_mlflow = _pair(registry)
    for uri in uris:
        assert direct.resolve(uri).to_json() == through_mlflow.resolve(uri).to_json(), uri
    assert direct._client is None, "every one of these was answered without MLflow's client"


def test_every_registry_reference_matches_mlflows_client(registry: Registry) -> None:
    store = Store.open(str(registry.store_root), create=True)
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]})
    first = store.commit_files("datasets", "main", [("a.csv", frame.to_csv(index=False).encode())]).commit_id
    second = store.commit_files("datasets", "main", [("b.csv", b"a,b,c\n4,5,6\n")]).commit_id
    v1, run1 = registry.log_weights_model(
        "fraud", weights(1), dataset=mlflow.data.from_pandas(frame, source=f"lockgate://datasets@{first}/a.csv")
    )
    v2, run2 = registry.log_weights_model("fraud", weights(2))
    v3, _ = registry.log_weights_model("fraud", weights(3))
    client = registry.client
    # Run 2 has two dataset inputs and a tag; lineage must list them in MLflow's order.
    with mlflow.start_run(run_id=run2):
        other = pd.DataFrame({"a": [4.0], "b": [5.0], "c": [6.0]})  # another digest: MLflow dedupes by it
        mlflow.log_input(mlflow.data.from_pandas(other, source=f"lockgate://datasets@{second}/b.csv"), context="eval")
    client.set_tag(run2, "lockgate.dataset", f"lockgate://datasets@{first}/a.csv")
    client.set_registered_model_alias("fraud", "champion", v1)
    client.set_registered_model_alias("fraud", "Challenger", v2)
    client.transition_model_version_stage("fraud", v1, "Production")
    client.transition_model_version_stage("fraud", v2, "Staging")
    client.set_model_version_tag("fraud", v2, "team", "risk")
    # v3 deleted: latest and @latest skip it, as MLflow does.
    client.delete_model_version("fraud", v3)
    logged = client.get_model_version("fraud", v1).source
    assert logged.startswith("models:/m-")
    _assert_same(
        registry,
        [
            "models:/fraud/1",
            "models:/fraud/2",
            "models:/fraud@champion",
            "models:/fraud@Challenger",
            "models:/fraud@latest",
            "models:/fraud@LATEST",
            "models:/fraud/latest",
            "models:/fraud/Production",
            "models:/fraud/production",
            "models:/fraud/STAGING",
            logged,
        ],
    )
    direct, _ = _pair(registry)
    assert direct.resolve("models:/fraud/latest").version == v2
    both = direct.resolve("models:/fraud/2")
    assert set(both.dataset_commits) == {first, second}
    assert direct.resolve("models:/fraud/1").dataset_commits == (first,) and run1


def test_a_pinned_version_matches_mlflows_client(registry: Registry) -> None:
    v1, _ = registry.log_weights_model("pinned", weights(4))
    v2, _ = registry.log_weights_model("pinned", weights(5))
    direct, _ = _pair(registry)
    v1_weights = direct.resolve(f"models:/pinned/{v1}").weights.uri
    # `lockgate import` pins a version by this tag; both readers must follow it.
    registry.client.set_model_version_tag("pinned", v2, URI_TAG, v1_weights)
    _assert_same(registry, [f"models:/pinned/{v2}"])
    assert direct.resolve(f"models:/pinned/{v2}").weights.uri == v1_weights


def test_missing_names_get_mlflows_errors_through_the_fallback(registry: Registry) -> None:
    registry.log_weights_model("known", weights(6))
    direct, _ = _pair(registry)
    with pytest.raises(ModelNotFoundError, match=r"no registered model 'nope'.*known"):
        direct.resolve("models:/nope/1")
    with pytest.raises(VersionNotFoundError, match="no alias 'ghost'"):
        direct.resolve("models:/known@ghost")
    with pytest.raises(VersionNotFoundError, match="no version 9"):
        direct.resolve("models:/known/9")
    with pytest.raises(VersionNotFoundError, match="no version in stage 'Archived'"):
        direct.resolve("models:/known/Archived")
    # Each of those was a direct decline, so MLflow's client gave the answer.
    reader = direct.direct
    assert reader is not None
    for uri in ["models:/nope/1", "models:/known@ghost", "models:/known/9", "models:/known/Archived"]:
        with pytest.raises(Declined):
            reader.model_version(parse_model_uri(uri))


def test_an_unknown_schema_revision_declines(registry: Registry) -> None:
    registry.log_weights_model("schema", weights(7))
    db = sqlite_path(registry.tracking_uri)
    assert db is not None
    direct, _ = _pair(registry)
    expected = direct.resolve("models:/schema/1").to_json()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    reader = direct.direct
    assert reader is not None
    with pytest.raises(Declined, match="ffffffffffff"):
        reader.model_version(parse_model_uri("models:/schema/1"))
    # MLflow's client is asked instead. (This process's MLflow verified the schema when it
    # logged the model and caches its engine, so it answers; a fresh one would refuse.)
    assert direct._client is None
    assert direct.resolve("models:/schema/1").to_json() == expected
    assert direct._client is not None, "the answer came through MLflow's client"


def test_a_missing_database_declines(tmp_path: Path) -> None:
    reader = SqliteRegistry.for_uris(f"sqlite:///{tmp_path / 'absent.db'}", f"sqlite:///{tmp_path / 'absent.db'}")
    assert reader is not None
    with pytest.raises(Declined, match="does not exist"):
        reader.model_version(parse_model_uri("models:/any/1"))
    assert not (tmp_path / "absent.db").exists(), "a read never creates the database"


@pytest.mark.parametrize(
    ("registry_uri", "tracking_uri"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:///a.db", "http://127.0.0.1:5000"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite:///a.db?timeout=5", "sqlite:///a.db?timeout=5"),
        ("postgresql://h/db", "postgresql://h/db"),
        (None, None),
    ],
)
def test_only_local_sqlite_files_are_read_directly(registry_uri: str | None, tracking_uri: str | None) -> None:
    assert SqliteRegistry.for_uris(registry_uri, tracking_uri) is None


def test_workspaces_leave_reads_to_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert SqliteRegistry.for_uris("sqlite:///a.db", "sqlite:///a.db") is None


def test_the_known_head_is_the_installed_mlflows_head() -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    major, minor = (int(part) for part in mlflow.__version__.split(".")[:2])
    assert KNOWN_SCHEMA_HEADS[(major, minor)] == _get_latest_schema_revision()


def test_a_cold_resolve_does_not_import_sqlalchemy(registry: Registry) -> None:
    registry.log_weights_model("cold", weights(8))
    script = textwrap.dedent(
        f"""
        import sys
        from lockgate.loader.registry import Resolver
        from lockgate.loader.store_config import open_configured_store
        resolved = Resolver(open_configured_store, tracking_uri={registry.tracking_uri!r}).resolve("models:/cold/1")
        assert resolved.version == "1" and resolved.weights_commit, resolved
        print("sqlalchemy" in sys.modules, "alembic" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        env={**registry.gateway_env(), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"], done.stdout
