"""Request ids: every prediction answer carries one, and the inference log keys its rows by it.

The rule for an id a client sends (``X-Request-Id``, or a V2 request's ``id``): 1 to 128
characters, each an ASCII letter, a digit, or one of ``.`` ``_`` ``:`` ``-``. That takes UUIDs,
ULIDs, W3C trace ids and the ids API gateways add, and keeps ids safe in headers, metric-free
log rows and file names. An id that breaks the rule is not echoed (it could be a megabyte, or
carry control characters into a header): the request gets a new id instead.

New ids are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so they sort by
time, and ids from several replicas never collide in practice.
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import Final

REQUEST_ID_HEADER: Final = "X-Lockgate-Request-Id"
INCOMING_REQUEST_ID_HEADER: Final = "x-request-id"
MAX_REQUEST_ID_LENGTH: Final = 128
REQUEST_ID_PATTERN: Final = r"^[A-Za-z0-9._:\-]{1,128}$"
_VALID: Final = re.compile(REQUEST_ID_PATTERN)


def is_valid_request_id(candidate: object) -> bool:
    return isinstance(candidate, str) and len(candidate) <= MAX_REQUEST_ID_LENGTH and bool(_VALID.fullmatch(candidate))


# The random bits need to be unique, not secret: a generator seeded from the OS once costs a
# fraction of os.urandom's system call per request. (Ids are not tokens: never trust one.)
_random = random.Random(os.urandom(32))


def new_request_id() -> str:
    """A UUIDv7: time-ordered, random in its low 74 bits."""
    value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC 4122 variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def request_id_from(candidate: object) -> str:
    """The client's id when it follows the rule, else a new one."""
    return candidate if isinstance(candidate, str) and is_valid_request_id(candidate) else new_request_id()
