"""Every bad input names what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.store import Store, parse_uri
from lockgate.store.errors import (
    AccessDeniedError,
    EmptyRepoError,
    InvalidURIError,
    PathNotFoundError,
    RefNotFoundError,
    RepoNotFoundError,
    StoreUnreachableError,
)
from tests.servers import SeaweedFS, free_port


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("http://models@main/x", "not a lockgate URI"),
        ("lockgate://", "repository name is missing"),
        ("lockgate://models@/x", "nothing after '@'"),
        ("lockgate://mo dels@main/x", "invalid repository name"),
        ("lockgate://models@ma:in/x", "invalid ref"),
        ("lockgate://models@main~x/x", "invalid ref"),
        ("lockgate://models@main/../etc/passwd", "'..' segments"),
    ],
)
def test_malformed_uris(uri: str, needle: str) -> None:
    with pytest.raises(InvalidURIError, match=needle):
        parse_uri(uri)


def test_uri_forms() -> None:
    uri = parse_uri("lockgate://models@main~2/a//b/")
    assert (uri.repo, uri.ref.name, uri.ref.back, uri.path) == ("models", "main", 2, "a/b")
    assert str(uri) == "lockgate://models@main~2/a/b"
    assert parse_uri("lockgate://models/x").ref.name == "main"


def test_unknown_repo_ref_path_and_empty_repo(store: Store) -> None:
    store.commit_files("models", "main", [("a/b.bin", b"x")])
    with pytest.raises(RepoNotFoundError, match=r"unknown repository 'nope'.*models"):
        store.resolve("nope", "main")
    with pytest.raises(RefNotFoundError, match=r"'dev'.*branches: main"):
        store.resolve("models", "dev")
    with pytest.raises(RefNotFoundError, match="does not exist"):
        store.resolve("models", "0" * 64)
    commit = store.resolve("models", "main")
    with pytest.raises(PathNotFoundError, match=r"'a/c\.bin'"):
        store.read_file(commit, "a/c.bin")
    with pytest.raises(PathNotFoundError, match="'zzz'"):
        store.list_files(commit, "zzz")
    store.refs.create_repo("empty")
    with pytest.raises(EmptyRepoError, match="'empty' has no commits"):
        store.resolve("empty", "main")


def test_missing_store_root(tmp_path: Path) -> None:
    with pytest.raises(StoreUnreachableError, match="does not exist"):
        Store.open(str(tmp_path / "nowhere"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreUnreachableError, match="not a lockgate store"):
        Store.open(str(tmp_path / "plain"))
    with pytest.raises(InvalidURIError, match="unsupported store root"):
        Store.open("ftp://host/x")


def test_unreachable_s3_endpoint() -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(StoreUnreachableError, match=f"127.0.0.1:{port}"):
        Store.open("s3://lockgate-tests/x", s3_endpoint_url=f"http://127.0.0.1:{port}")


@pytest.mark.s3
def test_s3_missing_bucket_and_refused_credentials(
    seaweed: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreUnreachableError, match="bucket 'no-such-bucket' does not exist"):
        Store.open("s3://no-such-bucket/x", s3_endpoint_url=seaweed.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(AccessDeniedError, match="refused the credentials"):
        Store.open(f"s3://{s3_bucket}/x", s3_endpoint_url=seaweed.endpoint)


def test_push_to_empty_destination_is_refused(store: Store) -> None:
    with pytest.raises(PathNotFoundError, match="non-empty destination"):
        store.commit_files("models", "main", [("", b"x")])
