"""A store in an S3 bucket under a prefix (``s3://bucket/prefix``).

Branches move with ``If-Match`` on the ref's ETag and tags are created with
``If-None-Match: *``: S3's own conditional writes are the compare-and-swap, so no lock
service is needed. Botocore errors are translated here, at the boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from lockgate.store.backends.base import KeyInfo
from lockgate.store.errors import (
    AccessDeniedError,
    BackendError,
    InvalidURIError,
    ObjectNotFoundError,
    StoreUnreachableError,
)

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def split_s3_root(root: str) -> tuple[str, str]:
    if not root.startswith("s3://"):
        raise InvalidURIError(f"not an S3 root: {root!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = root[len("s3://") :].partition("/")
    if len(bucket) < 3:
        raise InvalidURIError(f"S3 bucket name {bucket!r} in {root!r} must have at least 3 characters")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3Backend:
    def __init__(self, root: str, endpoint_url: str | None = None, client: Any | None = None) -> None:
        self.root = root
        self.bucket, self.prefix = split_s3_root(root)
        self.endpoint_url = endpoint_url
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
            connect_timeout=5,
            read_timeout=60,
        )
        # A session of our own: boto3's default session caches credentials process-wide, and
        # sessions are not meant to be shared across threads.
        self._client = client or boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self._check_bucket()

    def _where(self) -> str:
        return f"{self.root}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _fail(self, exc: Exception, key: str | None = None) -> NoReturn:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _MISSING and key is not None:
                raise ObjectNotFoundError(key) from exc
            if code in _DENIED:
                raise AccessDeniedError(f"S3 refused the credentials for {self._where()}: {code}") from exc
            if code in ("NoSuchBucket",):
                raise StoreUnreachableError(f"S3 bucket {self.bucket!r} does not exist ({self._where()})") from exc
            raise BackendError(f"S3 error on {key or self.root!r}: {code}: {exc}") from exc
        if isinstance(exc, EndpointConnectionError):
            raise StoreUnreachableError(f"cannot reach S3 for {self._where()}: {exc}") from exc
        raise StoreUnreachableError(f"S3 request failed for {self._where()}: {exc}") from exc

    def _check_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise StoreUnreachableError(f"S3 bucket {self.bucket!r} does not exist ({self._where()})") from exc
            self._fail(exc)
        except BotoCoreError as exc:
            self._fail(exc)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            return body
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{start + length - 1}"
            )
            body: bytes = response["Body"].read()
            return body
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)

    def size(self, key: str) -> int:
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)

    def stream(self, key: str) -> Any:
        """The object's body as a stream (``read(n)``, ``close()``): for copying large objects
        in without holding them in memory."""
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)

    def put(self, key: str, data: bytes | memoryview) -> None:
        try:
            body = bytes(data) if isinstance(data, memoryview) else data  # botocore wants bytes
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)

    def exists(self, key: str) -> bool:
        return self._read_ref_or_head(key, head=True) is not None

    def _read_ref_or_head(self, key: str, head: bool) -> tuple[bytes, str] | None:
        """GET (or HEAD) a key; None when it does not exist, every other failure translated."""
        try:
            if head:
                response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
                return b"", str(response["ETag"])
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), str(response["ETag"])
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            self._fail(exc, key)
        except BotoCoreError as exc:
            self._fail(exc, key)

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.prefix) :]
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, prefix)

    def list_after(self, prefix: str, start_after: str) -> Iterator[str]:
        # StartAfter: one request per 1,000 new keys, however many older ones the prefix holds.
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix), StartAfter=self._key(start_after))
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.prefix) :]
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, prefix)

    def list_info(self, prefix: str) -> Iterator[KeyInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self.prefix) :]
                    yield KeyInfo(key, int(item["Size"]), item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, prefix)

    def temporaries(self) -> Iterator[KeyInfo]:
        # Every value is one PutObject: S3 keeps none of a PUT that did not complete.
        return iter(())

    def delete_temporary(self, key: str) -> None:
        pass

    def read_ref(self, key: str) -> tuple[bytes, str] | None:
        return self._read_ref_or_head(key, head=False)

    def swap_ref(self, key: str, data: bytes, expected_version: str | None) -> bool:
        try:
            if expected_version is None:
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            else:
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=expected_version)
            return True
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                return False
            self._fail(exc, key)
        except BotoCoreError as exc:
            self._fail(exc, key)

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)

    def close(self) -> None:
        self._client.close()
