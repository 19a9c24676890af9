"""MSB-first bit packing of variable-width fields (vectorized with numpy)."""

from __future__ import annotations

import numpy as np


def pack_bits(values: np.ndarray, lengths: np.ndarray, *, masked: bool = False) -> tuple[np.ndarray, int]:
    """Concatenate the low `lengths[i]` bits of each value (MSB first) -> (uint8 array, total bits).

    `masked=True`: the caller guarantees every value is below 2^length (e.g. canonical Huffman
    codes), so the masking pass is skipped (a value with higher bits set then corrupts its
    neighbours).

    Lengths in [0, 64]. Vectorized: neighbours are first fused into one field
    (v0 << l1 | v1, l0 + l1) while every fused field fits in 64 bits, which halves the work per
    pass for short codes (Huffman: ~2x faster, the same bytes); then each field lands in at most
    two 64-bit words and fields that start in the same word are summed (their bits are disjoint,
    so sum == or) by `reduceat`.
    """
    values = np.asarray(values, dtype=np.uint64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8), 0
    if lengths.min() < 0 or lengths.max() > 64:
        raise ValueError("pack_bits: lengths must be in [0, 64]")
    vals, lengths = _fuse_neighbours(values if masked else values & _low_mask(lengths), lengths)
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    starts = ends - lengths
    w = starts >> 6
    sh = 64 - (starts & 63) - lengths
    fits = sh >= 0
    contrib = np.where(fits, vals << np.maximum(sh, 0).astype(np.uint64),
                       vals >> np.maximum(-sh, 0).astype(np.uint64))
    words = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)
    firsts = np.concatenate([[0], np.flatnonzero(np.diff(w)) + 1])
    words[w[firsts]] = np.add.reduceat(contrib, firsts)
    sp = np.flatnonzero(~fits)
    if sp.size:
        words[w[sp] + 1] |= vals[sp] << (64 + sh[sp]).astype(np.uint64)
    out = words.astype(">u8").view(np.uint8)[: (total + 7) // 8]
    return out, total


def _low_mask(lengths: np.ndarray) -> np.ndarray:
    """2^len - 1 per field (all ones for 64; numpy's shift by 64 is not defined)."""
    ul = np.minimum(lengths, 63).astype(np.uint64)
    return np.where(lengths >= 64, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << ul) - np.uint64(1))


def _fuse_neighbours(values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fuse fields 2i, 2i+1 into (v0 << l1 | v1, l0 + l1), repeatedly, while every fused field fits
    in 64 bits: the same bit stream in half as many fields per pass (values already masked)."""
    short = values.size >= 2 and int(lengths.max()) < 64
    while values.size >= 2:
        if values.size & 1:  # an empty last field keeps the pairs aligned
            values, lengths = np.append(values, np.uint64(0)), np.append(lengths, 0)
        l1 = lengths[1::2]
        fused = lengths[0::2] + l1
        top = int(fused.max())
        if top > 64:
            break
        if short:  # every shift below 64: no guard pass
            hi = values[0::2] << l1.astype(np.uint64)
        else:
            # l1 == 64 only with l0 == 0: shifting by 64 is not defined, so that high part is zeroed
            hi = np.where(l1 >= 64, np.uint64(0), values[0::2] << np.minimum(l1, 63).astype(np.uint64))
        values, lengths, short = hi | values[1::2], fused, top < 64
    return values, lengths


def stream_words(data: bytes | np.ndarray) -> np.ndarray:
    """Bytes -> native uint64 words (MSB-first stream), padded with two zero words."""
    b = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    nw = (b.size + 7) // 8 + 2
    buf = np.zeros(nw * 8, dtype=np.uint8)
    buf[: b.size] = b
    return buf.view(">u8").astype(np.uint64)


def peek(words: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """The `width` (1..64) bits starting at each bit position, as uint64."""
    w = pos >> 6
    off = (pos & 63).astype(np.uint64)
    hi = words[w] << off
    lo = (words[w + 1] >> np.uint64(1)) >> (np.uint64(63) - off)
    return (hi | lo) >> np.uint64(64 - width)


def unpack_bits(data: bytes | np.ndarray, width: int, count: int, start: int = 0) -> np.ndarray:
    """Read `count` fixed-width (1..64) fields from an MSB-first bit stream."""
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    words = stream_words(data)
    pos = start + width * np.arange(count, dtype=np.int64)
    if (pos[-1] + width + 7) // 8 > words.size * 8:
        raise ValueError("unpack_bits: stream too short")
    return peek(words, pos, width)
