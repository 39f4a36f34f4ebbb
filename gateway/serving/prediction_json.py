"""Predictions as the exact bytes MLflow's scoring server writes.

MLflow turns an ndarray into ``tolist()`` and writes it with the standard library's ``json``
(``", "`` and ``": "`` separators, ``repr`` floats, ``NaN`` allowed). ``json.dumps`` on the same
list writes the same bytes; orjson would not (no spaces, different exponent format).
"""

from __future__ import annotations

import json

import numpy as np


def predictions_json(predictions: np.ndarray) -> bytes:
    return json.dumps({"predictions": predictions.tolist()}).encode()
