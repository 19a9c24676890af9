"""One uint8 plane of w <= 8 bits sent raw, as a constant, or with ANS under its order-0 histogram.

Whichever is smallest is sent (the exact sizes are compared). ANS: Duda 2009, `constriction`'s
`Categorical` model and `AnsCoder`. Section of one plane (little endian): a mode byte (0 raw,
1 ans, 2 constant); constant: the value (1 byte); raw: ceil(n w / 8) bytes of packed w-bit values
(MSB first); ans: lo, hi (1 byte each), the counts of lo .. hi-1 as Elias-gamma(count + 1)
(Elias 1975; the count of hi is n minus their sum) padded to a byte, a u32 word count per chunk of
`CHUNK` entries, then the chunks' 32-bit ANS words.

Bits of a section (`PlaneCode`): payload = raw bytes or ANS words, side = the histogram (lo, hi,
counts) or a constant's value, header = the mode byte and the chunk word counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coders.models.side_info import elias_gamma_pack, elias_gamma_unpack

CHUNK = 1 << 20
"""Entries per ANS stream: memory stays bounded for huge tensors (4 bytes of header per chunk)."""
ENTROPY_MARGIN_BITS = 128
"""Slack of the skip rule of `code_plane`. Under any model q, ANS needs at least sum -log2 q(x_i)
>= (order-0 entropy) bits per coded symbol, less its 64-bit state, except that constriction's coder
starts in state 0 and stays there while the table's first symbol is encoded, so a trailing run of
it is free. A plane whose entropy without that run, plus side bits, exceeds raw + this margin
cannot beat raw, so the coder is skipped: the choice stays the exact smaller size."""

_PLANE_RAW, _PLANE_ANS, _PLANE_CONST = 0, 1, 2


def corrupt(what: str) -> ValueError:
    """The one error of a blob that does not parse."""
    return ValueError(f"decode_float: blob is truncated or corrupt ({what})")


@dataclass
class PlaneCode:
    """How one plane was sent and what it cost (bits)."""

    plane: str
    width: int
    coder: str
    payload_bits: int
    side_bits: int
    header_bits: int
    entropy: float
    n: int


def plane_entropy(counts: np.ndarray) -> float:
    """Order-0 (plug-in) entropy in bits per entry of a plane with these value counts."""
    c = counts[counts > 0].astype(np.float64)
    if c.size <= 1:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def pack_plane(p: np.ndarray, width: int) -> bytes:
    """The low `width` bits of each uint8, MSB first, padded to a byte.

    The bytes of `coders.entropy.bitpack.pack_bits(p, width)`, for one fixed width <= 8: eight
    values make exactly `width` bytes, joined into the low 8 * width bits of a uint64 whose
    big-endian bytes are kept (vectorized over groups of eight; 10-30x faster than the general
    variable-length packer on planes of 2M entries).
    """
    if width == 8:
        return p.tobytes()
    if width == 1:
        return np.packbits(p).tobytes()
    n = p.size
    g = np.zeros(-(-n // 8) * 8, dtype=np.uint64)
    g[:n] = p
    g = g.reshape(-1, 8)
    word = np.zeros(g.shape[0], dtype=np.uint64)
    for j in range(8):  # the 8 slots of a group, not the entries
        word |= g[:, j] << np.uint64(width * (7 - j))
    out = word.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - width :]
    return out.tobytes()[: (n * width + 7) // 8]


def unpack_plane(data: bytes, width: int, n: int) -> np.ndarray:
    """Inverse of `pack_plane`: n values of `width` bits (as `bitpack.unpack_bits`, as uint8)."""
    if width == 8:
        return np.frombuffer(data, dtype=np.uint8, count=n).copy()
    if width == 1:
        return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n)
    groups = -(-n // 8)
    buf = np.zeros((groups, 8), dtype=np.uint8)
    flat = np.zeros(groups * width, dtype=np.uint8)
    flat[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    buf[:, 8 - width :] = flat.reshape(groups, width)
    word = buf.view(">u8").reshape(groups).astype(np.uint64)
    mask = np.uint64((1 << width) - 1)
    out = np.empty((groups, 8), dtype=np.uint8)
    for j in range(8):
        out[:, j] = (word >> np.uint64(width * (7 - j))) & mask
    return out.reshape(-1)[:n]


def _categorical(counts: np.ndarray) -> Any:
    """constriction's categorical model of the counts over lo .. hi (24-bit probabilities).

    Not `coders.entropy.categorical`, which takes a `ProbabilityModel`: that table adds an escape
    entry and floors every probability, a different table (other bits); a plane's alphabet is
    closed and every value in lo .. hi is counted.
    """
    import constriction

    return constriction.stream.model.Categorical(counts.astype(np.float64) / float(counts.sum()),
                                                 perfect=False)


def code_plane(p: np.ndarray, counts: np.ndarray, name: str, width: int) -> tuple[bytes, PlaneCode]:
    """The smallest of: constant, raw, ANS under the plane's histogram; with its bit counts."""
    n = p.size
    present = np.flatnonzero(counts)
    if present.size == 0:
        return bytes([_PLANE_RAW]), PlaneCode(name, width, "raw", 0, 0, 8, 0.0, 0)
    if present.size == 1:
        return (bytes([_PLANE_CONST, int(present[0])]),
                PlaneCode(name, width, "constant", 0, 8, 8, 0.0, n))
    h = plane_entropy(counts)
    raw_len = (n * width + 7) // 8

    def raw() -> tuple[bytes, PlaneCode]:
        return (bytes([_PLANE_RAW]) + pack_plane(p, width),
                PlaneCode(name, width, "raw", 8 * raw_len, 0, 8, h, n))

    lo, hi = int(present[0]), int(present[-1])
    side = bytes([lo, hi]) + elias_gamma_pack(counts[lo:hi] + 1)
    # the trailing run of the table's first symbol costs nothing (one pass only when there is one)
    run = int(np.argmax(p[::-1] != lo)) if p[-1] == lo else 0
    rest = counts.copy()
    rest[lo] -= run
    if (n - run) * plane_entropy(rest) + 8 * len(side) > 8 * raw_len + ENTROPY_MARGIN_BITS:
        return raw()  # cannot beat raw: skip the coder
    import constriction

    model = _categorical(counts[lo : hi + 1])
    idx = np.empty(n, dtype=np.int32)
    np.subtract(p, np.int32(lo), out=idx, casting="unsafe")
    streams = []
    for a in range(0, n, CHUNK):
        enc = constriction.stream.stack.AnsCoder()
        enc.encode_reverse(idx[a : a + CHUNK], model)
        streams.append(enc.get_compressed().astype("<u4"))
    table = np.array([s.size for s in streams], dtype="<u4").tobytes()
    body = b"".join(s.tobytes() for s in streams)
    if len(side) + len(table) + len(body) < raw_len:
        return (bytes([_PLANE_ANS]) + side + table + body,
                PlaneCode(name, width, "ans", 8 * len(body), 8 * len(side), 8 + 8 * len(table), h, n))
    return raw()


def _histogram(data: bytes, off: int, n: int) -> tuple[int, np.ndarray, int]:
    """(lo, counts of lo .. hi, offset after) of an ans section's histogram at data[off:]."""
    lo, hi = data[off], data[off + 1]
    if hi <= lo:
        raise corrupt("histogram range")
    try:
        counts, used = elias_gamma_unpack(data, hi - lo, off + 2)
    except ValueError as err:
        raise corrupt("histogram codes") from err
    if counts.min() < 1 or counts.max() > n + 1:  # count + 1 of at most n entries
        raise corrupt("histogram codes")
    counts = np.append(counts - 1, n - int((counts - 1).sum()))
    if counts[-1] < 1:
        raise corrupt("histogram counts")
    return lo, counts, off + 2 + used


def decode_plane(data: bytes, off: int, n: int, width: int) -> tuple[np.ndarray, int]:
    """Inverse of `code_plane`: the n values of the section at data[off:], and the offset after it."""
    if off >= len(data):
        raise corrupt("plane mode")
    mode = data[off]
    off += 1
    if mode == _PLANE_CONST:
        if off >= len(data):
            raise corrupt("constant plane")
        return np.full(n, data[off], dtype=np.uint8), off + 1
    if mode == _PLANE_RAW:
        nbytes = (n * width + 7) // 8
        if off + nbytes > len(data):
            raise corrupt("raw plane")
        return unpack_plane(data[off : off + nbytes], width, n), off + nbytes
    if mode != _PLANE_ANS or off + 2 > len(data):
        raise corrupt(f"plane mode {mode}")
    import constriction

    lo, counts, off = _histogram(data, off, n)
    model = _categorical(counts)
    k = -(-n // CHUNK)
    if off + 4 * k > len(data):
        raise corrupt("chunk table")
    sizes = np.frombuffer(data, dtype="<u4", count=k, offset=off).astype(np.int64)
    off += 4 * k
    if off + 4 * int(sizes.sum()) > len(data):
        raise corrupt("ANS words")
    out = np.empty(n, dtype=np.uint8)
    for c in range(k):
        words = np.frombuffer(data, dtype="<u4", count=int(sizes[c]), offset=off).astype(np.uint32)
        off += 4 * int(sizes[c])
        count = min(CHUNK, n - c * CHUNK)
        try:
            idx = np.asarray(constriction.stream.stack.AnsCoder(words).decode(model, count))
        except Exception as err:  # constriction raises its own error types on bad streams
            raise corrupt(f"ANS chunk {c}: {err}") from err
        out[c * CHUNK : c * CHUNK + count] = idx + lo
    return out, off
