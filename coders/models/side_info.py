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
    # floor(log2 v) via frexp on float64 is exact below 2^53 (float64 rounding can reach the
    # next power of two above it): the rare larger values are counted on Python ints
    _, e = np.frexp(v.astype(np.float64))
    out = 2 * (e.astype(np.int64) - 1) + 1
    big = np.flatnonzero(v >= 1 << 53)
    for i in big:
        out.flat[i] = 2 * int(v.flat[i]).bit_length() - 1
    return out


def elias_gamma_pack(values: np.ndarray) -> bytes:
    """Elias-gamma codes (Elias 1975) of positive integers, MSB first, zero-padded to a whole byte.

    v >= 1 with L = floor(log2 v) + 1 bits is written as L - 1 zeros followed by v itself.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return b""
    if v.min() < 1:
        raise ValueError("elias_gamma_pack: values must be >= 1")
    width = elias_gamma_bits(v)  # 2 L - 1: v written in that many bits has L - 1 leading zeros
    owner = np.repeat(np.arange(v.size), width)
    pos = np.arange(owner.size) - np.repeat(np.cumsum(width) - width, width)
    shift = (width[owner] - 1 - pos).astype(np.int64)
    bits = (v[owner] >> shift) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def elias_gamma_unpack(buf: bytes, count: int, offset: int = 0) -> tuple[np.ndarray, int]:
    """(the first `count` values of an `elias_gamma_pack` stream at byte `offset`, bytes read)."""
    most = (127 * count + 7) // 8  # an int64 value's code is at most 127 bits
    bits = np.unpackbits(np.frombuffer(buf[offset : offset + most], dtype=np.uint8))
    ones = np.flatnonzero(bits)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        j = np.searchsorted(ones, pos)
        if j == ones.size:
            raise ValueError("elias_gamma_unpack: stream ends early (truncated message?)")
        zeros = int(ones[j]) - pos
        if ones[j] + zeros >= bits.size:
            raise ValueError("elias_gamma_unpack: stream ends early (truncated message?)")
        field = bits[pos + zeros : pos + 2 * zeros + 1]
        out[i] = int(np.dot(field.astype(np.int64), 1 << np.arange(zeros, -1, -1, dtype=np.int64)))
        pos += 2 * zeros + 1
    return out, (pos + 7) // 8


def zigzag(v: np.ndarray) -> np.ndarray:
    """int64 -> uint64, 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of `zigzag`."""
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ (-(u & np.uint64(1)).view(np.int64))


def range_header_bits(lo: int, size: int) -> int:
    """Bits to state a table's range: Elias-gamma of zigzag(lo) + 1 and of the table size.

    Counted on Python ints: zigzag(lo) + 1 reaches 2^64 at the int64 edges (129 bits)."""
    lo = int(lo)
    z = 2 * lo if lo >= 0 else -2 * lo - 1
    return (2 * (z + 1).bit_length() - 1) + (2 * max(int(size), 1).bit_length() - 1)
