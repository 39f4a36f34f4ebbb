"""The Open Inference Protocol's tensor datatypes: their numpy dtypes and the ranges JSON values
must fall in. Shared by the general V2 reader (``v2_tensors``) and the plain JSON reader
(``v2_plain_json``)."""

from __future__ import annotations

from typing import Any

import numpy as np

# V2 datatype -> numpy dtype (BYTES: Python objects; decoded to str where they are UTF-8).
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
INTEGER_RANGES = {
    name: (int(np.iinfo(kind).min), int(np.iinfo(kind).max))
    for name, kind in DATATYPES.items()
    if name.startswith(("INT", "UINT"))
}
FP32_MAX = float(np.finfo(np.float32).max)
