"""Building the loader's parts from settings: the one place that connects configuration to
the store, the registry and the cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.gateway.settings import Settings
from lockgate.store import Store

if TYPE_CHECKING:
    from lockgate.loader.model_loader import ModelLoader
    from lockgate.loader.signing.check import SignatureChecker


def export_store_settings(settings: Settings) -> None:
    """MLflow builds lockgate's artifact repository and dataset source itself, from a URI
    alone; they read the store root from the environment, so make it match the settings."""
    os.environ["LOCKGATE_STORE"] = settings.store
    os.environ["LOCKGATE_INDEX_CACHE_DIR"] = settings.index_cache_dir
    if settings.s3_endpoint_url:
        os.environ["LOCKGATE_S3_ENDPOINT_URL"] = settings.s3_endpoint_url


def store_opener(settings: Settings, create: bool = False) -> Callable[[], Store]:
    @cache
    def open_store() -> Store:
        return Store.open(settings.store, create=create, s3_endpoint_url=settings.s3_endpoint_url,
                          index_cache_dir=Path(settings.index_cache_dir))  # fmt: skip

    return open_store


def build_loader(settings: Settings) -> ModelLoader:
    # Imported here: MLflow takes ~1.5 s to import, and `lockgate store ...` never needs it.
    from lockgate.gateway.model_code_policy import load_policy
    from lockgate.loader.cache import ModelCache
    from lockgate.loader.model_loader import ModelLoader
    from lockgate.loader.registry import Resolver

    export_store_settings(settings)
    # MLflow's HTTP client retries 7 times with exponential backoff (minutes) by default. A
    # gateway should learn quickly that the registry is down; it keeps serving either way.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    open_store = store_opener(settings)
    resolver = Resolver(open_store, tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    cache = ModelCache(settings.cache_dir, settings.cache_max_bytes)
    return ModelLoader(
        resolver, cache, open_store, policy=load_policy(settings), signatures=signature_checker(settings)
    )


def signature_checker(settings: Settings) -> SignatureChecker:
    """The signature policy of ``LOCKGATE_TRUSTED_SIGNERS`` and ``LOCKGATE_REQUIRE_SIGNATURE``; a
    file that is not a PEM key or certificate stops the gateway with one line (``ConfigError``)."""
    from lockgate.gateway.errors import ConfigError
    from lockgate.loader.signing.check import SignatureChecker
    from lockgate.loader.signing.policy import PolicyError, load_policy

    try:
        policy = load_policy(settings.trusted_signers.split(","), required=settings.require_signature)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc
    if policy.required and not policy.trusted:
        raise ConfigError("LOCKGATE_REQUIRE_SIGNATURE=true needs LOCKGATE_TRUSTED_SIGNERS: no signature could pass")
    return SignatureChecker(policy, store_opener(settings))
