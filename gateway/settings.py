"""Settings from the environment (prefix ``LOCKGATE_``). Built by the CLI or the app factory,
never at import time, so tests and embedders can pass their own."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORE = ".lockgate/store"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", extra="ignore")

    store: str = DEFAULT_STORE
    """Store root: a directory, ``s3://bucket/prefix`` or ``memory://``."""
    s3_endpoint_url: str | None = None
    """S3 endpoint for non-AWS object stores (SeaweedFS, MinIO). Falls back to boto3's own
    ``AWS_ENDPOINT_URL`` handling when unset."""
