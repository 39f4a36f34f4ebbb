"""Whether two answers are the same answer: byte for byte, dtype and shape included (what the
tree engine's deploy check and its restart record both require)."""

from __future__ import annotations

import numpy as np


def same_answer(expected: np.ndarray, got: np.ndarray) -> str | None:
    """None when ``got`` is ``expected`` byte for byte (dtype and shape too), else what differs."""
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return f"answers {got.dtype}{list(got.shape)} where the model answers {expected.dtype}{list(expected.shape)}"
    if expected.dtype == object:
        differing = [i for i, (a, b) in enumerate(zip(expected.tolist(), got.tolist(), strict=True)) if a != b]
    elif expected.tobytes() == got.tobytes():
        return None
    else:
        flat_expected = expected.reshape(len(expected), -1).view(np.uint8).reshape(len(expected), -1)
        flat_got = got.reshape(len(got), -1).view(np.uint8).reshape(len(got), -1)
        differing = np.flatnonzero((flat_expected != flat_got).any(axis=1)).tolist()
    if not differing:
        return None
    first = differing[0]
    return (
        f"{len(differing)} of {len(expected)} checked rows differ from the model's own answer "
        f"(first: row {first}, {got[first]!r} instead of {expected[first]!r})"
    )
