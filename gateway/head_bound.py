"""The request-head bound (``LOCKGATE_MAX_HEADER_BYTES``) as an ASGI layer, for servers whose
HTTP parser lockgate does not own (granian).

granian's HTTP/1 parser (hyper) bounds what it buffers for one connection
(``HTTP1Settings.max_buffer_size``, set to the same limit): a 64 MiB header is refused with 431
before it reaches Python. Its bound is on a read buffer, not on the head, so a head somewhat past
the limit can still arrive whole (a 40 KiB header passed a 32 KiB buffer, measured). This layer
makes the limit exact: it counts the request line and headers as uvicorn's bounded protocol does
(``gateway/bounded_http.py``: name, value and 4 bytes of ": " and CRLF per header) and answers
the same 431, in the same JSON shape, before the app sees the request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from lockgate.gateway.bounded_http import HEADER_OVERHEAD, head_refusal_body, headers_over_limit


class HeadBound:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            for name, value in scope["headers"]:
                size += len(name) + len(value) + HEADER_OVERHEAD
            if size > self.limit:
                await self._refuse(size, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, size: int, send: Send) -> None:
        body = head_refusal_body(headers_over_limit(size, self.limit))
        await send({"type": "http.response.start", "status": 431, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
