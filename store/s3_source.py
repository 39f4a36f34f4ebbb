"""Copying in from any S3 bucket (``lockgate store cp s3://bucket/prefix ...``): the objects under
a prefix as streams, so a copy never holds a whole object in memory or on local disk.

Endpoint and credentials are those of the store: ``LOCKGATE_S3_ENDPOINT_URL`` and the usual
``AWS_*`` variables. Errors are the store's own (unreachable, refused credentials, not found).
"""

from __future__ import annotations

from lockgate.store.backends.s3 import S3Backend, split_s3_root
from lockgate.store.errors import InvalidURIError, PathNotFoundError
from lockgate.store.paths import check_path
from lockgate.store.repository import Stream


def s3_sources(uri: str, dest: str, *, recursive: bool, endpoint_url: str | None) -> list[tuple[str, Stream]]:
    """(store path under ``dest``, stream) for the object ``uri`` names, or with ``recursive``
    for every object under it as a prefix."""
    bucket, prefix = split_s3_root(uri)
    key = prefix.rstrip("/")
    source = S3Backend(f"s3://{bucket}", endpoint_url=endpoint_url)
    dest = dest.strip("/")
    if key and not uri.endswith("/") and source.exists(key):
        name = key.rsplit("/", 1)[-1]
        target = dest if dest and not dest.endswith("/") else f"{dest}/{name}".strip("/")
        return [(check_path(target), _stream(source, key))]
    keys = [k for k in source.list(f"{key}/" if key else "") if not k.endswith("/")]
    if not keys:
        raise PathNotFoundError(f"nothing at {uri}: no object and no objects under that prefix")
    if not recursive:
        raise InvalidURIError(f"{uri} is a prefix of {len(keys)} objects: copy it with -r")
    base = f"{key}/" if key else ""
    out = []
    for found in sorted(keys):
        rel = found[len(base) :]
        out.append((check_path(f"{dest}/{rel}" if dest else rel), _stream(source, found)))
    return out


def _stream(source: S3Backend, key: str) -> Stream:
    return Stream(open=lambda: source.stream(key), size=source.size(key), name=f"s3://{source.bucket}/{key}")
