"""The threads that read big request bodies, apart from everything else that runs in threads.

A body past ``LEAN_INLINE_BYTES`` is parsed off the event loop so it cannot hold every other
request. It used to go to asyncio's default executor, which MLflow's scoring path, V2's pyfunc
calls and every deploy share: six hostile bodies in flight there made valid requests wait
seconds. Decoding now has a small pool of its own. Hostile parsing can queue behind itself but
cannot take the threads that serving and deploys need, and every read is linear in its size
(``gateway/protocols/v2/tensors.py``) and runs under the request timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Result = TypeVar("Result")

# Two: decoding is mostly C (orjson, msgspec, protobuf) that holds the GIL, so more threads buy
# nothing on a small machine, and two keep one slow read from queueing every other big one.
DEFAULT_DECODE_THREADS = 2


class DecodePool:
    def __init__(self, threads: int = DEFAULT_DECODE_THREADS) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lockgate-decode")

    async def run(self, read: Callable[..., Result], *args: object) -> Result:
        """``read(*args)`` in one of the pool's threads. A caller that times out stops waiting;
        the read itself is bounded by its input's size, so the thread comes back soon."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, read, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
