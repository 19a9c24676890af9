"""Canonical Huffman code (Huffman 1952; canonical form as in DEFLATE, RFC 1951) from a model's table.

Length-limited to 32 bits, bit-packed with numpy; the symbols of a chunk are cut into lanes of
`HUFFMAN_LANE` symbols whose bit lengths are stored (the lane table), so the decoder walks all
lanes at once (vectorized). The exact length of a chunk is computed without building the stream:
its code bits per lane are sum_s c_lane(s) len(s), so a symbol histogram per lane gives every
model's size (`chunk_size_of_lanes`, `coders.entropy.stream.huffman_size`).
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from coders.entropy.bitpack import pack_bits, peek, stream_words, unpack_bits

HUFFMAN_MAX_LEN = 32
HUFFMAN_LANE = 4096
_LUT_MAX_LEN = 20
DOUBLING_MAX_BITS = 1 << 19
"""Streams up to this many bits decode by pointer doubling over every bit position (a few large
numpy passes instead of one pass per symbol of a lane, which costs ~15 us each on few lanes)."""


def huffman_lengths(probs: np.ndarray) -> np.ndarray:
    """Code lengths of a Huffman code for `probs` (Huffman 1952); two symbols minimum."""
    p = np.asarray(probs, dtype=np.float64)
    m = p.size
    if m < 2:
        return np.ones(m, dtype=np.int64)
    heap = [(float(v), i) for i, v in enumerate(p)]
    heapq.heapify(heap)
    parent = np.empty(2 * m - 1, dtype=np.int64)
    nxt = m
    while len(heap) > 1:
        a, ia = heapq.heappop(heap)
        b, ib = heapq.heappop(heap)
        parent[ia] = parent[ib] = nxt
        heapq.heappush(heap, (a + b, nxt))
        nxt += 1
    depth = np.zeros(2 * m - 1, dtype=np.int64)
    for node in range(2 * m - 3, -1, -1):  # parents always have larger ids than children
        depth[node] = depth[parent[node]] + 1
    return depth[:m]


@dataclass
class HuffmanCode:
    """Canonical Huffman code over the model's table (codes ordered by (length, symbol))."""

    lengths: np.ndarray
    codes: np.ndarray
    max_len: int
    order: np.ndarray
    starts: np.ndarray
    sorted_lengths: np.ndarray

    @property
    def codebook_bits(self) -> int:
        """Size of the canonical codebook if sent: a 6-bit length per table entry."""
        return 6 * int(self.lengths.size)

    def kraft_sum(self) -> float:
        return float(np.sum(np.ldexp(1.0, -self.lengths)))

    def expected_length(self, probs: np.ndarray) -> float:
        return float(np.dot(probs, self.lengths))


def canonical_huffman(probs: np.ndarray, max_len: int = HUFFMAN_MAX_LEN) -> HuffmanCode:
    """Canonical, length-limited Huffman code: if the longest code exceeds `max_len`, the small
    probabilities are raised to a floor (x4 per try) and the code rebuilt, which keeps it a true
    Huffman code of a slightly flattened table (Kraft sum exactly 1)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.size < 2:
        raise ValueError("canonical_huffman: need at least two table entries")
    if p.size > 1 << max_len:
        raise ValueError(f"canonical_huffman: {p.size} symbols cannot have codes of <= {max_len} bits")
    floor = 0.0
    q = p
    while True:
        lengths = huffman_lengths(q)
        if lengths.max() <= max_len:
            break
        floor = max(floor * 4.0, 2.0 ** -max_len)
        q = np.maximum(p, floor)
    order = np.lexsort((np.arange(p.size), lengths))
    ls = lengths[order]
    L = int(ls.max())
    inc = np.left_shift(np.int64(1), (L - ls))
    starts = np.concatenate([[0], np.cumsum(inc)[:-1]]).astype(np.uint64)  # left-justified codes
    codes = np.empty(p.size, dtype=np.uint64)
    codes[order] = starts >> (L - ls).astype(np.uint64)
    return HuffmanCode(lengths, codes, L, order.astype(np.int64), starts, ls)


def chunk_size_of_lanes(lane_bits: np.ndarray) -> tuple[int, int]:
    """(bits `HuffmanCoder.chunk_bits` counts, bytes `encode_chunk` writes) of a chunk whose lanes
    hold `lane_bits` code bits each: with k > 1 lanes, the lane table is a u8 width w and a u32
    byte count (5 bytes), then the k - 1 lane lengths but the last at w bits each, of which
    `chunk_bits` counts 6 bits for w plus (k - 1) w; then the code bits, padded to a byte."""
    code = int(lane_bits.sum())
    k = int(lane_bits.size)
    if k > 1:
        w = max(1, int(lane_bits[:-1].max()).bit_length())
        return code + 6 + (k - 1) * w, 5 + -(-(k - 1) * w // 8) + -(-code // 8)
    return code, -(-code // 8)


def huffman_code(model: Any) -> HuffmanCode:
    """The model's canonical Huffman code (built once per model)."""
    code = model._cache.get("huffman")
    if code is None:
        code = model._cache["huffman"] = canonical_huffman(model.probs)
    return code


class HuffmanCoder:
    """Canonical Huffman coding of table indices in lanes of `lane` symbols."""

    name = "huffman"
    wire_id = 3
    uses_model = True

    def __init__(self, lane: int = HUFFMAN_LANE) -> None:
        self.lane = lane

    def code_probs(self, model: Any) -> np.ndarray:
        """2^-length of each table entry: the probabilities the code lengths stand for."""
        return np.ldexp(1.0, -huffman_code(model).lengths)

    def lane_bits(self, values: np.ndarray, model: Any) -> np.ndarray:
        """Code bits of each lane of a chunk of table indices."""
        lens = huffman_code(model).lengths[values]
        return np.add.reduceat(lens, np.arange(0, values.size, self.lane)) if values.size else lens

    def chunk_bits(self, values: np.ndarray, model: Any) -> int:
        """Code bits plus the lane table (6 bits for its width, one width per lane but the last)."""
        return chunk_size_of_lanes(self.lane_bits(values, model))[0]

    def encode_chunk(self, values: np.ndarray, model: Any) -> bytes:
        return self.encode_chunk_counted(values, model)[0]

    def encode_chunk_counted(self, values: np.ndarray, model: Any) -> tuple[bytes, int]:
        """The chunk's bytes and its bits as `chunk_bits` counts them, from the packed stream."""
        code, lane = huffman_code(model), self.lane
        lens = code.lengths[values]
        # canonical codes are below 2^length already: no masking
        stream, bits = pack_bits(code.codes[values], lens, masked=True)
        k = -(-values.size // lane)
        head = b""
        if k > 1:
            seg = np.add.reduceat(lens, np.arange(0, values.size, lane))[:-1]
            w = max(1, int(seg.max()).bit_length())
            table, table_bits = pack_bits(seg.astype(np.uint64), np.full(k - 1, w), masked=True)
            head = struct.pack("<BI", w, table.size) + table.tobytes()
            bits += 6 + table_bits
        return head + stream.tobytes(), bits

    def decode_chunk(self, data: bytes, model: Any, count: int, dtype: Any = np.int32) -> np.ndarray:
        code, lane = huffman_code(model), self.lane
        k = -(-count // lane)
        if k > 1:
            w, tbytes = struct.unpack_from("<BI", data, 0)
            seg = unpack_bits(data[5 : 5 + tbytes], w, k - 1).astype(np.int64)
            data = data[5 + tbytes :]
            pos = np.concatenate([[0], np.cumsum(seg)]).astype(np.int64)
            steps = lane
        else:
            pos = np.zeros(1, dtype=np.int64)
            steps = count
        words = stream_words(data)
        cap = (words.size - 2) * 64
        L = code.max_len
        if L <= _LUT_MAX_LEN:
            lut = np.repeat(np.arange(code.order.size, dtype=np.int32),
                            np.left_shift(1, L - code.sorted_lengths))
            lut_len = code.sorted_lengths[lut]
        if cap <= DOUBLING_MAX_BITS:
            # every bit position p: the code starting there (j) and the next position p + len(j);
            # J_i = J_{i-1} o J_{i-1} jumps 2^i symbols, and each lane's positions follow by halving
            at = np.arange(cap + 1, dtype=np.int64)
            win = peek(words, at, L)
            if L <= _LUT_MAX_LEN:
                j_at, len_at = lut[win], lut_len[win]
            else:
                j_at = (np.searchsorted(code.starts, win, side="right") - 1).astype(np.int32)
                len_at = code.sorted_lengths[j_at]
            jumps = [np.minimum(at + len_at, cap)]
            while (1 << len(jumps)) < steps:
                jumps.append(jumps[-1][jumps[-1]])
            q = np.minimum(pos, cap)[:, None]
            for jump in reversed(jumps):
                nxt = np.empty((q.shape[0], 2 * q.shape[1]), dtype=np.int64)
                nxt[:, 0::2], nxt[:, 1::2] = q, jump[q]
                q = nxt
            return code.order[j_at[q[:, :steps]].ravel()[:count]].astype(np.int32)
        out = np.empty((steps, pos.size), dtype=np.int32)
        slen = code.sorted_lengths
        for t in range(steps):
            win = peek(words, np.minimum(pos, cap), L)
            if L <= _LUT_MAX_LEN:
                j = lut[win]
                pos += lut_len[win]
            else:
                j = np.searchsorted(code.starts, win, side="right") - 1
                pos += slen[j]
            out[t] = j
        return code.order[out.T.ravel()[:count]].astype(np.int32)
