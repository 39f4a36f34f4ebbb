"""Adaptive batching: merged predicts, split results, isolation of a bad request, bounds."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from lockgate.gateway.serving.batcher import INLINE_MAX_ROWS, Batcher


class CountingModel:
    """Doubles its input; records the size of every call; fails on a row containing -1."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls.append(len(matrix))
        if (matrix == -1).any():
            raise ValueError("row with -1")
        return matrix[:, 0] * 2


async def _burst(batcher: Batcher, matrices: list[np.ndarray], inflight: list[int]) -> list[object]:
    async def one(matrix: np.ndarray) -> object:
        inflight[0] += 1
        try:
            return (await batcher.predict(matrix))[0]
        except Exception as exc:
            return exc
        finally:
            inflight[0] -= 1

    return list(await asyncio.gather(*(one(m) for m in matrices)))


def _batcher(model: CountingModel, inflight: list[int], **kwargs: object) -> Batcher:
    options: dict[str, object] = {"enabled": True, "max_rows": 64, "max_wait_seconds": 0.05} | kwargs
    return Batcher(model.predict, name="t", inflight=lambda: inflight[0], **options)  # type: ignore[arg-type]


def test_concurrent_requests_share_predict_calls_and_get_their_own_rows() -> None:
    model, inflight = CountingModel(), [0]
    batcher = _batcher(model, inflight)
    matrices = [np.full((1 + i % 3, 2), float(i)) for i in range(40)]
    results = asyncio.run(_burst(batcher, matrices, inflight))
    for i, result in enumerate(results):
        assert isinstance(result, np.ndarray)
        assert result.tolist() == [2.0 * i] * (1 + i % 3), f"request {i} got another request's rows"
    assert sum(model.calls) == sum(len(m) for m in matrices)
    assert len(model.calls) < len(matrices), "nothing was merged"
    assert max(model.calls) <= 64
    assert batcher.stats.requests == 40
    batcher.close()


def test_a_failing_request_fails_alone() -> None:
    model, inflight = CountingModel(), [0]
    batcher = _batcher(model, inflight)
    matrices = [np.full((1, 2), float(i)) for i in range(10)]
    matrices[4] = np.full((1, 2), -1.0)
    results = asyncio.run(_burst(batcher, matrices, inflight))
    assert isinstance(results[4], ValueError)
    for i, result in enumerate(results):
        if i != 4:
            assert isinstance(result, np.ndarray) and result.tolist() == [2.0 * i]
    batcher.close()


def test_a_request_larger_than_the_bound_runs_alone_and_others_stay_within_it() -> None:
    model, inflight = CountingModel(), [0]
    batcher = _batcher(model, inflight, max_rows=8)
    matrices = [np.ones((20, 2)), *[np.ones((3, 2)) for _ in range(10)]]
    asyncio.run(_burst(batcher, matrices, inflight))
    assert 20 in model.calls
    assert all(size <= 8 for size in model.calls if size != 20)
    batcher.close()


def test_disabled_batching_predicts_each_request_alone() -> None:
    model, inflight = CountingModel(), [0]
    batcher = _batcher(model, inflight, enabled=False)
    asyncio.run(_burst(batcher, [np.ones((2, 2)) for _ in range(12)], inflight))
    assert model.calls == [2] * 12
    batcher.close()


def test_a_lone_request_does_not_wait_for_company() -> None:
    """With nothing else in flight the batch goes at once, even with a long max wait (the bound
    here is 60x below the configured wait, not a speed claim)."""
    model, inflight = CountingModel(), [0]
    batcher = _batcher(model, inflight, max_wait_seconds=30.0)

    async def lone() -> None:
        inflight[0] = 1
        await asyncio.wait_for(batcher.predict(np.ones((1, 2))), timeout=0.5)

    asyncio.run(lone())
    batcher.close()


def test_a_wrong_number_of_predictions_is_an_error() -> None:
    batcher = Batcher(lambda m: np.zeros(len(m) + 1), name="t", enabled=True, max_rows=8, max_wait_seconds=0,
                      inflight=lambda: 1)  # fmt: skip
    with pytest.raises(ValueError, match="returned 2 predictions for 1 rows"):
        asyncio.run(batcher.predict(np.ones((1, 2))))
    batcher.close()


class ThreadRecordingModel:
    """Records the thread of every call; takes ``seconds`` per call (a busy wait: measured time)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.threads: list[str] = []

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            pass
        return matrix[:, 0]


async def _one_at_a_time(batcher: Batcher, matrices: list[np.ndarray]) -> None:
    for matrix in matrices:
        await batcher.predict(matrix)


def test_a_small_predict_measured_quick_runs_on_the_event_loop_and_a_big_batch_in_the_thread() -> None:
    model, inflight = ThreadRecordingModel(), [0]
    batcher = Batcher(model.predict, name="t", enabled=True, max_rows=4096, max_wait_seconds=0.0,
                      inflight=lambda: inflight[0])  # fmt: skip
    batcher.inline_seconds = 10.0  # whatever this machine's noise, every call counts as quick
    loop_thread = threading.current_thread().name

    async def calls() -> None:
        await _one_at_a_time(batcher, [np.ones((1, 2))] * 5 + [np.ones((INLINE_MAX_ROWS + 1, 2))])
        batcher.use(model.predict)  # a new predict function starts in the thread, until measured
        await _one_at_a_time(batcher, [np.ones((1, 2))] * 2)

    asyncio.run(calls())
    # The first call is unmeasured: the thread; then the loop; a batch past INLINE_MAX_ROWS: the thread.
    assert model.threads[0] != loop_thread
    assert model.threads[1:5] == [loop_thread] * 4
    assert model.threads[5] != loop_thread
    assert model.threads[6] != loop_thread and model.threads[7] == loop_thread
    batcher.close()


def test_a_predict_slower_than_the_hand_off_stays_in_the_thread() -> None:
    model, inflight = ThreadRecordingModel(seconds=0.005), [0]
    batcher = Batcher(model.predict, name="t", enabled=True, max_rows=64, max_wait_seconds=0.0,
                      inflight=lambda: inflight[0])  # fmt: skip
    assert batcher.inline_seconds < 0.005
    asyncio.run(_one_at_a_time(batcher, [np.ones((1, 2))] * 4))
    assert threading.current_thread().name not in model.threads
    batcher.close()
