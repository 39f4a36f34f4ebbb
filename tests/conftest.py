"""Shared fixtures: real backends (a directory, memory, and SeaweedFS S3 on 127.0.0.1)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import Store
from tests.servers import SeaweedFS


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs"))
    saved = {k: os.environ.get(k) for k in server.env()}
    # boto3 reads credentials from the environment, in this process and in the child
    # processes the concurrency and crash tests start.
    os.environ.update({k: v for k, v in server.env().items() if k != "LOCKGATE_S3_ENDPOINT_URL"})
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="session")
def s3_bucket(seaweed: SeaweedFS) -> str:
    seaweed.client().create_bucket(Bucket="lockgate-tests")
    return "lockgate-tests"


@pytest.fixture
def s3_root(s3_bucket: str) -> str:
    """A fresh, empty store prefix for each test."""
    return f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}"


def _open_root(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if kind == "file":
        return str(tmp_path / "store"), None
    if kind == "memory":
        return "memory://", None
    server: SeaweedFS = request.getfixturevalue("seaweed")
    return request.getfixturevalue("s3_root"), server.endpoint


@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    root, endpoint = _open_root(request.param, tmp_path, request)
    opened = Store.open(root, create=True, s3_endpoint_url=endpoint)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def shared_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """A store root that several processes can open (so not memory)."""
    root, endpoint = _open_root(request.param, tmp_path, request)
    Store.open(root, create=True, s3_endpoint_url=endpoint).close()
    return root, endpoint
