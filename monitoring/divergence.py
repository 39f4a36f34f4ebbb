"""PSI and Jensen-Shannon distance between two binned distributions (pure numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# Empty bins would make PSI infinite; this floor is the usual smoothing (as in most PSI
# implementations) and caps one empty bin's contribution at a few units.
EPSILON = 1e-4


def psi(baseline: NDArray[np.float64], live_counts: NDArray[np.float64]) -> float:
    """Population stability index of live counts against baseline proportions."""
    total = live_counts.sum()
    if total == 0:
        return 0.0
    p = np.clip(live_counts / total, EPSILON, None)
    q = np.clip(baseline, EPSILON, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def js_distance(baseline: NDArray[np.float64], live_counts: NDArray[np.float64]) -> float:
    """Jensen-Shannon distance, base 2: in [0, 1], 0 for identical distributions."""
    total = live_counts.sum()
    if total == 0 or baseline.sum() == 0:
        return 0.0
    p = live_counts / total
    q = baseline / baseline.sum()
    m = (p + q) / 2

    def kl(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    divergence = max(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0)
    return float(np.sqrt(divergence))
