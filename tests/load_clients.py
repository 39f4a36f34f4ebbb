"""A small keep-alive HTTP load generator for tests: many threads, each with its own
``http.client`` connection (httpx costs ~5x more CPU per request, and on two cores the client's
CPU is the server's). Every answer is kept with its status and lineage headers."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int  # -1: the connection failed
    version: str | None
    role: str | None
    key: str | None = None


def hammer(
    url: str,
    body: bytes,
    *,
    clients: int = 16,
    total: int | None = None,
    until: threading.Event | None = None,
    keys: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> list[Answer]:
    """POST ``body`` to ``url`` from ``clients`` threads until ``total`` requests are answered
    or ``until`` is set. With ``keys``, request i sends route key ``keys[i % len(keys)]``."""
    assert total is not None or until is not None
    parts = urlsplit(url)
    counter = itertools.count()
    answers: list[Answer] = []
    lock = threading.Lock()
    base = {"Content-Type": "application/json", **(headers or {})}

    def next_index() -> int | None:
        if until is not None and until.is_set():
            return None
        index = next(counter)
        return None if total is not None and index >= total else index

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        mine: list[Answer] = []
        while (index := next_index()) is not None:
            key = keys[index % len(keys)] if keys else None
            sent = base if key is None else {**base, "X-Lockgate-Route-Key": key}
            started = time.monotonic()
            try:
                connection.request("POST", parts.path, body=body, headers=sent)
                response = connection.getresponse()
                response.read()
                answer = Answer(started, time.monotonic(), response.status,
                                response.getheader("X-Lockgate-Model-Version"),
                                response.getheader("X-Lockgate-Role"), key)  # fmt: skip
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                answer = Answer(started, time.monotonic(), -1, None, None, key)
            mine.append(answer)
        connection.close()
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return answers


def in_background(run: Callable[[], list[Answer]]) -> tuple[threading.Thread, list[list[Answer]]]:
    """Run a ``hammer`` call in a thread; its answers land in the returned list."""
    box: list[list[Answer]] = []
    thread = threading.Thread(target=lambda: box.append(run()))
    thread.start()
    return thread, box
