"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools accepts a header of any size and accumulates it on the event loop: two requests with
a 64 MiB ``X-Lockgate-Route-Key`` added 261-289 MiB of RSS and held other clients for 10-14 s
(uvicorn issue #157; its h11 protocol has a bound, at about half httptools' requests per core).
This subclass keeps httptools and adds the bound: a head past ``LOCKGATE_MAX_HEADER_BYTES``
answers 431 at once and the connection closes, having buffered at most the bound plus the
chunk or two that were in flight when it passed (the transport reads at most 256 KiB at a time).

Two counts, both cheap:

- while a head is incomplete, the bytes of every chunk that arrived wholly inside it (an add per
  chunk, checked after the parser has seen the chunk): this bounds what httptools buffers for a
  head that never ends;
- the sizes of the request line and the headers the parser hands over (an add per header),
  checked when the head is complete: a head that arrives whole in one chunk is held to the same
  bound.

A request httptools cannot parse gets a 400 that names what was wrong (uvicorn's says only
"Invalid HTTP request received."), in the same JSON error shape.

A refused connection is closed gracefully: the 431 is written, then whatever the client is still
sending is read and dropped (never parsed or kept) for up to ``LINGER_SECONDS``, so a client that
writes its whole request before reading sees the 431 rather than a reset.
"""

from __future__ import annotations

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

LINGER_SECONDS = 2.0
HEADER_OVERHEAD = 4  # ": " and CRLF: a header's share of the head beyond its name and value


def headers_over_limit(size: int, limit: int) -> str:
    """Why a complete head is refused: its size against the limit (both servers say it so)."""
    return f"the request's headers are {size:,} bytes, over the {limit:,}-byte limit"


def head_refusal_body(why: str) -> bytes:
    """The 431's body, in lockgate's one error shape (uvicorn's protocol and ``head_bound.py``)."""
    message = f"{why} (LOCKGATE_MAX_HEADER_BYTES): send fewer or shorter headers"
    return orjson.dumps({"error_code": "REQUEST_HEADER_FIELDS_TOO_LARGE", "message": message})


def bounded_http_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with the head bounded to ``max_head_bytes``."""

    class Bounded(BoundedHeadProtocol):
        limit = max_head_bytes

    return Bounded


class BoundedHeadProtocol(HttpToolsProtocol):
    limit = 32 * 1024

    # From a message's first byte to its headers' end. (Between messages it is False: the chunk in
    # which the next message begins is not counted, the ones after it are; the bound still holds
    # to within a chunk, and bodies cost no extra call.)
    _head_open = True
    _head_completed = False  # a head completed during the current chunk
    _pending_bytes = 0  # bytes of chunks that arrived wholly inside the current, incomplete head
    _head_size = 0  # request line and headers as handed over by the parser
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: dropped, never parsed or kept
        was_open = self._head_open
        self._head_completed = False
        # uvicorn's own data_received, but a request httptools cannot parse is answered with what
        # was wrong, in JSON like every other error (uvicorn says "Invalid HTTP request received.").
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._refuse(
                    400, orjson.dumps({"error_code": "BAD_REQUEST", "message": f"invalid HTTP request: {exc}"})
                )
            return
        if self._refused or not (was_open and self._head_open) or self._head_completed:
            return
        self._pending_bytes += len(data)
        if self._pending_bytes > self.limit:
            self._refuse_head(f"the request's head passed {self.limit:,} bytes before it ended")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + HEADER_OVERHEAD
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_completed = True
        self._pending_bytes = 0
        if self._head_size > self.limit:
            self._refuse_head(headers_over_limit(self._head_size, self.limit))
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        # After a refusal the parser may still hand over the refused request's body in the same
        # chunk. No cycle was made for it, so uvicorn would append it to the previous request's,
        # which may not have read its own body yet (pipelining).
        if not self._refused:
            super().on_body(body)

    # on_message_complete needs no guard: the previous cycle's body is complete by then, so
    # uvicorn's handler only re-marks it, or finds no cycle and raises, which data_received drops.

    def _refuse_head(self, why: str) -> None:
        self._refuse(431, head_refusal_body(why))

    def _refuse(self, status: int, body: bytes) -> None:
        """Answer ``status`` and close the connection, gracefully (see the module's docstring)."""
        self._refused = True
        head = (
            STATUS_LINE[status] + b"content-type: application/json\r\n"
            b"connection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        transport = self.transport
        transport.write(head + body)
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()  # a pipelined answer is still being written: close as uvicorn does
        elif transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()
