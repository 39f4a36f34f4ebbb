"""Every URI form of one version resolves to the same immutable weights commit, on an
embedded sqlite registry and on a live ``mlflow server``."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from lockgate.loader.errors import ModelNotFoundError, ModelURIError, VersionNotFoundError
from lockgate.loader.model_uri import parse_model_uri
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store
from tests.registry_helpers import Registry, weights


def _resolver(registry: Registry) -> Resolver:
    return Resolver(open_configured_store, tracking_uri=registry.tracking_uri)


def test_all_uri_forms_pin_the_same_commit(any_registry: Registry) -> None:
    reg = any_registry
    v1, run1 = reg.log_weights_model("fraud", weights(1))
    client = reg.client
    client.set_registered_model_alias("fraud", "champion", v1)
    client.transition_model_version_stage("fraud", v1, "Production")
    resolver = _resolver(reg)
    base = resolver.resolve("models:/fraud/1")
    assert base.weights_commit is not None and base.version == "1" and base.run_id == run1
    assert base.code_commit == "0123456789abcdef0123456789abcdef01234567"
    forms = [
        "models:/fraud@champion",
        "models:/fraud/Production",
        "models:/fraud/production",
        "models:/fraud/latest",
        f"models:/{base.logged_model_id}",
        f"runs:/{run1}/model",
        base.weights.uri,
    ]
    for uri in forms:
        assert resolver.resolve(uri).weights_commit == base.weights_commit, uri

    # A second version moves the branch; v1's commit must not move with it.
    v2, _ = reg.log_weights_model("fraud", weights(2))
    store = Store.open(str(reg.store_root))
    assert store.resolve("models", "main") != base.weights_commit
    assert resolver.resolve("models:/fraud/1").weights_commit == base.weights_commit
    assert resolver.resolve("models:/fraud/latest").version == v2
    # Moving the alias and the stage changes what they resolve to.
    client.set_registered_model_alias("fraud", "champion", v2)
    client.transition_model_version_stage("fraud", v2, "Production", archive_existing_versions=True)
    moved = resolver.resolve("models:/fraud@champion")
    assert moved.version == v2 and moved.weights_commit != base.weights_commit
    assert resolver.resolve("models:/fraud/Production").version == v2
    assert moved.moves and not resolver.resolve("models:/fraud/1").moves


def test_dataset_lineage_from_log_input(registry: Registry) -> None:
    store = Store.open(str(registry.store_root), create=True)
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    data_commit = store.commit_files("datasets", "main", [("train.csv", frame.to_csv(index=False).encode())]).commit_id
    dataset = mlflow.data.from_pandas(frame, source="lockgate://datasets@main/train.csv")
    assert dataset.source.uri == f"lockgate://datasets@{data_commit}/train.csv", "a branch source is pinned"
    registry.log_weights_model("lineage", weights(3), dataset=dataset)
    # The branch moves on after training; lineage still names the training commit.
    store.commit_files("datasets", "main", [("train.csv", b"a,b,c\n9,9,9\n")])
    resolved = _resolver(registry).resolve("models:/lineage/1")
    assert resolved.dataset_commit == data_commit
    assert resolved.dataset_uris == (f"lockgate://datasets@{data_commit}/train.csv",)
    local = dataset.source.load()
    assert pd.read_csv(local).equals(frame)


def test_dataset_lineage_from_tag(registry: Registry) -> None:
    store = Store.open(str(registry.store_root), create=True)
    data_commit = store.commit_files("datasets", "main", [("t.csv", b"x\n1\n")]).commit_id
    version, run_id = registry.log_weights_model("tagged", weights(4))
    registry.client.set_tag(run_id, "lockgate.dataset", "lockgate://datasets@main/t.csv")
    resolved = _resolver(registry).resolve(f"models:/tagged/{version}")
    assert resolved.dataset_commit == data_commit
    assert any("moving ref" in note for note in resolved.notes)


def test_unknown_model_alias_and_version(registry: Registry) -> None:
    registry.log_weights_model("known", weights(5))
    resolver = _resolver(registry)
    with pytest.raises(ModelNotFoundError, match=r"no registered model 'nope'.*known"):
        resolver.resolve("models:/nope/1")
    with pytest.raises(VersionNotFoundError, match="no alias 'ghost'"):
        resolver.resolve("models:/known@ghost")
    with pytest.raises(VersionNotFoundError, match="no version 9"):
        resolver.resolve("models:/known/9")
    with pytest.raises(VersionNotFoundError, match="no version in stage 'Staging'"):
        resolver.resolve("models:/known/Staging")


@pytest.mark.parametrize(
    "uri", ["models:/x/champion", "models:/", "s3://bucket/model", "runs:/notarun/model", "lockgate://bad repo@main/x"]
)
def test_malformed_model_uris(uri: str) -> None:
    with pytest.raises(ModelURIError):
        parse_model_uri(uri)
