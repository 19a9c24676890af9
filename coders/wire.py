"""Sizes of the values that travel, in bits, and the rounding to bf16: the one place a format's
width is written.

Every bit count in `coders` (side information of quantizers and models, payload sizes of the
compressors, the 16-bit baseline of every report) takes its widths from here, and everything that
is sent as bfloat16 (block scales, family parameters) is rounded by `round_bf16`.
"""

from __future__ import annotations

import numpy as np

FLOAT32_BITS = 32
FLOAT16_BITS = 16
BF16_BITS = 16
"""The baseline: a bf16 (or fp16) all-reduce sends 16 bits per entry."""
INT32_BITS = 32
"""An int32 index (top-k positions, S3GD-MV supports)."""


def round_bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), returned as float32."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def bf16(v: float) -> float:
    """One value as a decoder receives it in 16 bits (`round_bf16` of a scalar)."""
    return float(round_bf16(np.array([v], dtype=np.float32))[0])
