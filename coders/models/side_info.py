"""Bits a decoder receives before it can decode: universal codes of integers, zigzag signs.

- Elias-gamma (Elias 1975): 2 floor(log2 v) + 1 bits for an integer v >= 1;
- a table's range: Elias-gamma of zigzag(lo) + 1 and of the table size (`range_header_bits`).
"""

from __future__ import annotations

import numpy as np


def elias_gamma_bits(values: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias-gamma code of each positive integer v: 2 floor(log2 v) + 1."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and v.min() < 1:
        raise ValueError("elias_gamma_bits: values must be >= 1")
    # exact floor(log2 v) for int64 via frexp on float64 is exact below 2^53
    _, e = np.frexp(v.astype(np.float64))
    return 2 * (e.astype(np.int64) - 1) + 1


def zigzag(v: np.ndarray) -> np.ndarray:
    """int64 -> uint64, 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of `zigzag`."""
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ (-(u & np.uint64(1)).view(np.int64))


def range_header_bits(lo: int, size: int) -> int:
    """Bits to state a table's range: Elias-gamma of zigzag(lo) + 1 and of the table size."""
    z = int(zigzag(np.array([lo]))[0])
    return int(elias_gamma_bits(np.array([min(z + 1, 2**62), max(size, 1)])).sum())
