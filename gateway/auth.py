"""Who may call what: admin routes and, when tokens are configured, prediction routes.

Admin routes:
- With ``LOCKGATE_ADMIN_TOKEN`` set, they need ``Authorization: Bearer <token>``.
- Without it, they answer loopback clients only. A browser on the same host is a loopback
  client too, so admin requests that a browser sends cross-site are refused whatever the
  token: an ``Origin`` other than the gateway's own, or ``Sec-Fetch-Site`` other than
  ``same-origin``/``none``. Every admin POST must also be ``application/json``: a page can
  send ``text/plain`` or a form without a CORS preflight, but not JSON, and lockgate grants
  no preflight.
- A reverse proxy on the same host makes every client look like loopback: set a token there.

Prediction routes (``/invocations``, ``/endpoints/*``) are open unless ``LOCKGATE_API_TOKENS``
lists bearer tokens (the admin token works there too). Health, readiness and metrics stay open.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request

from lockgate.gateway.errors import AuthError, UnsupportedMediaTypeError

_SAFE_FETCH_SITES = frozenset({"same-origin", "none"})


def _as_bytes(text: str) -> bytes:
    # Starlette decodes header values as latin-1; compare bytes, never a non-ASCII str.
    return text.encode("utf-8", errors="surrogateescape")


def _bearer(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (HTTP or gRPC metadata)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _matches(supplied: str, tokens: tuple[str, ...]) -> bool:
    supplied_bytes = supplied.encode("latin-1", errors="replace")
    # Compare against every token (no early exit), so timing does not tell which one is close.
    found = False
    for token in tokens:
        found |= hmac.compare_digest(supplied_bytes, _as_bytes(token))
    return found


def own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}".lower()


class AccessGuard:
    def __init__(self, admin_token: str | None, api_tokens: tuple[str, ...] = ()) -> None:
        self._admin_tokens = (admin_token,) if admin_token else ()
        self._api_tokens = tuple(api_tokens) + self._admin_tokens if api_tokens else ()

    @property
    def predictions_protected(self) -> bool:
        return bool(self._api_tokens)

    def admin(self, request: Request) -> str:
        """The actor recorded in the ledger for this admin request; raises when refused."""
        self._refuse_cross_site(request)
        if request.method == "POST":
            media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                raise UnsupportedMediaTypeError(
                    f"admin POST requests need 'Content-Type: application/json', not {media_type or 'none'!r}"
                )
        if self._admin_tokens:
            supplied = _bearer(request)
            if supplied is None:
                raise AuthError("admin routes need 'Authorization: Bearer <LOCKGATE_ADMIN_TOKEN>'", 401)
            if not _matches(supplied, self._admin_tokens):
                raise AuthError("the admin token is wrong", 403)
            return "admin-token"
        host = request.client.host if request.client else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise AuthError("no LOCKGATE_ADMIN_TOKEN is set, so admin routes answer loopback clients only", 403)
        return f"loopback:{host}"

    def prediction(self, request: Request) -> None:
        if self._api_tokens:  # an open gateway reads no header: this runs on every prediction
            self.prediction_token(_bearer(request))

    def prediction_token(self, supplied: str | None) -> None:
        """Refuse a prediction whose bearer token (None: none sent) is not one of the tokens."""
        if not self._api_tokens:
            return
        if supplied is None:
            raise AuthError("this gateway needs 'Authorization: Bearer <token>' (LOCKGATE_API_TOKENS)", 401)
        if not _matches(supplied, self._api_tokens):
            raise AuthError("the bearer token is not one of LOCKGATE_API_TOKENS", 403)

    @staticmethod
    def _refuse_cross_site(request: Request) -> None:
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in _SAFE_FETCH_SITES:
            raise AuthError(
                f"admin requests sent by a browser from another site are refused (Sec-Fetch-Site: {fetch_site})", 403
            )
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() != own_origin(request):
            raise AuthError(f"admin requests from another origin are refused (Origin: {origin})", 403)
