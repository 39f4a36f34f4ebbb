"""Errors raised by the loader.

    LoaderError
    ├── ModelURIError              a model URI is malformed or of an unknown form
    ├── ResolveError               the registry does not know what the URI names
    │   ├── ModelNotFoundError       no such registered model / logged model / run
    │   ├── VersionNotFoundError     no such version, alias or stage member
    │   └── NoArtifactsError         the version exists but has no model files
    ├── RegistryUnavailableError   the MLflow registry cannot be reached
    ├── FetchError                 the model files could not be materialized
    │   ├── StoreUnavailableError    the store cannot be reached (and the version is not cached)
    │   ├── ArtifactIntegrityError   bytes failed verification (names the chunk or file)
    │   ├── CacheFullError           pinned versions leave no room under the cache bound
    │   └── DiskFullError            the cache's disk ran out of space
    ├── ArtifactSourceError        an MLflow artifact URI to copy from cannot be listed or read
    └── ModelLoadError             the files are there but the model will not load or warm up
        ├── UnsupportedFlavorError   none of the flavors present can be served
        ├── MissingFlavorLibraryError  the flavor's library (xgboost, lightgbm) is not installed
        └── ModelCodeRefusedError    safe load is on and every servable flavor would run code

Store errors are translated at this boundary with ``raise ... from``; callers above the
loader never see ``store`` exceptions.
"""

from __future__ import annotations


class LoaderError(Exception):
    pass


class ModelURIError(LoaderError, ValueError):
    pass


class ResolveError(LoaderError, LookupError):
    pass


class ModelNotFoundError(ResolveError):
    pass


class VersionNotFoundError(ResolveError):
    pass


class NoArtifactsError(ResolveError):
    pass


class RegistryUnavailableError(LoaderError):
    pass


class FetchError(LoaderError):
    pass


class StoreUnavailableError(FetchError):
    pass


class ArtifactIntegrityError(FetchError):
    pass


class CacheFullError(FetchError):
    pass


class DiskFullError(FetchError):
    pass


class ArtifactSourceError(LoaderError):
    pass


class ModelLoadError(LoaderError):
    pass


class UnsupportedFlavorError(ModelLoadError):
    pass


class MissingFlavorLibraryError(ModelLoadError):
    pass


class ModelCodeRefusedError(ModelLoadError):
    pass
