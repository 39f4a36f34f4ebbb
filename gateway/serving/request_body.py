"""A request's body, read with its bound, the same for every protocol; and the size past which a
body is parsed in the decode pool rather than on the event loop."""

from __future__ import annotations

from starlette.requests import Request

from lockgate.gateway.errors import RequestTooLargeError

# Small bodies parse in microseconds on the event loop; a big one would hold it, so it moves.
LEAN_INLINE_BYTES = 32 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(
            f"request body of {int(declared):,} bytes exceeds the {limit:,}-byte limit (LOCKGATE_MAX_BODY_BYTES)"
        )
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise RequestTooLargeError(f"request body exceeds the {limit:,}-byte limit (LOCKGATE_MAX_BODY_BYTES)")
    return bytes(body)
