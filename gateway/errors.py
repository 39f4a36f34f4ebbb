"""Errors raised by the gateway, and the one place errors become HTTP statuses.

    GatewayError
    ├── EndpointNotFoundError    no endpoint by that name (404)
    ├── EndpointNotReadyError    the endpoint has no loaded model yet (503)
    ├── VersionNotServingError   a request names a version no role of the endpoint serves (404)
    ├── RequestTimeoutError      past LOCKGATE_REQUEST_TIMEOUT (504)
    ├── AuthError                a missing or wrong token, a non-loopback admin client, or a
    │                            cross-site admin request (401/403)
    ├── RequestTooLargeError     body over LOCKGATE_MAX_BODY_BYTES (413)
    ├── BadRequestError          a request the gateway refuses before any model sees it (400)
    │   └── V2RequestError       a V2 request that cannot be read or does not fit (400, INVALID_V2_REQUEST)
    ├── InvalidEndpointNameError a name that breaks the endpoint name rule (422)
    ├── NoRollbackTargetError    rollback asked of an endpoint with no previous version (409)
    ├── NoCanaryError            promote asked of an endpoint with no live canary (409)
    ├── InvalidPolicyError       a traffic policy that cannot be applied as given (422)
    ├── PolicyNotAppliedError    the primary moved, its canary or shadow could not be set (the
    │                            cause's status; the message says what serves now)
    ├── UnsupportedMediaTypeError an admin POST that is not JSON (415)
    └── ConfigError              a config file that cannot be read (CLI exit 2)

Every protocol raises this one tree, and translates it at its edge: MLflow's
``{"error_code", "message"}``, V2 REST's ``{"error"}`` with the same status, gRPC's status codes
(``grpc_server._CODES``). A refused MLflow webhook (``WebhookRefused``) is answered where it is
raised.

Loader and store errors raised during a deploy map to statuses by ``status_for``.
"""

from __future__ import annotations

from lockgate.loader.errors import (
    ArtifactIntegrityError,
    FetchError,
    LoaderError,
    ModelLoadError,
    ModelURIError,
    RegistryUnavailableError,
    ResolveError,
)
from lockgate.store.errors import BackendError, IntegrityError, InvalidURIError, NotFoundError, StoreError


class GatewayError(Exception):
    status = 500
    error_code = "INTERNAL_ERROR"


class EndpointNotFoundError(GatewayError):
    status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class EndpointNotReadyError(GatewayError):
    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class AuthError(GatewayError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"


class RequestTooLargeError(GatewayError):
    status = 413
    error_code = "INVALID_PARAMETER_VALUE"


class BadRequestError(GatewayError):
    status = 400
    error_code = "BAD_REQUEST"


class VersionNotServingError(GatewayError):
    status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class RequestTimeoutError(GatewayError):
    status = 504
    error_code = "REQUEST_TIMEOUT"


class InvalidEndpointNameError(GatewayError):
    status = 422
    error_code = "INVALID_PARAMETER_VALUE"


class NoRollbackTargetError(GatewayError):
    status = 409
    error_code = "INVALID_STATE"


class NoCanaryError(GatewayError):
    status = 409
    error_code = "INVALID_STATE"


class InvalidPolicyError(GatewayError):
    status = 422
    error_code = "INVALID_PARAMETER_VALUE"


class PolicyNotAppliedError(GatewayError):
    """A deploy moved the primary, then could not set its canary or shadow: the status is the
    cause's, and the message says what serves now."""

    def __init__(self, message: str, status: int, error_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class ConfigError(GatewayError):
    status = 400
    error_code = "INVALID_PARAMETER_VALUE"


def status_for(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, MLflow-style error_code) for any error a request or deploy can raise."""
    if isinstance(exc, GatewayError):
        return exc.status, exc.error_code
    if isinstance(exc, ModelURIError):
        return 400, "INVALID_PARAMETER_VALUE"
    if isinstance(exc, ResolveError):
        return 404, "RESOURCE_DOES_NOT_EXIST"
    if isinstance(exc, ArtifactIntegrityError):
        # Damaged or crafted store contents: retrying will not help, and it is not the client's doing.
        return 502, "DATA_LOSS"
    if isinstance(exc, RegistryUnavailableError | FetchError):
        return 503, "TEMPORARILY_UNAVAILABLE"
    if isinstance(exc, ModelLoadError):
        return 422, "INVALID_PARAMETER_VALUE"
    # Store errors should have been translated by the loader; map the ones that slip through.
    if isinstance(exc, InvalidURIError):
        return 400, "INVALID_PARAMETER_VALUE"
    if isinstance(exc, IntegrityError):
        return 502, "DATA_LOSS"
    if isinstance(exc, NotFoundError):
        return 404, "RESOURCE_DOES_NOT_EXIST"
    if isinstance(exc, BackendError):
        return 503, "TEMPORARILY_UNAVAILABLE"
    if isinstance(exc, LoaderError | StoreError):
        return 500, "INTERNAL_ERROR"
    return 500, "INTERNAL_ERROR"
