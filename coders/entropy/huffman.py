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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coders.entropy.bitpack import pack_bits, peek, stream_words, unpack_bits

HUFFMAN_MAX_LEN = 32
HUFFMAN_LANE = 4096
_LUT_MAX_LEN = 20
DOUBLING_MAX_BITS = 1 << 19
"""Streams up to this many bits decode by pointer doubling over every bit position (a few large
numpy passes instead of one pass per symbol of a lane, which costs ~15 us each on few lanes)."""
WINDOW_BITS = 14
"""Longer streams of short codes (mean length <= a third of this) decode every lane a window of
this many bits per pass: all the whole codes in it at once (`HuffmanCode.window_table`), ~4x fewer
passes than one symbol per pass; longer codes decode one symbol per lane and pass."""
WINDOW_SYMBOLS = 8
"""At most this many symbols are taken from one window."""


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
    _windows: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def codebook_bits(self) -> int:
        """Size of the canonical codebook if sent: a 6-bit length per table entry."""
        return 6 * int(self.lengths.size)

    def kraft_sum(self) -> float:
        return float(np.sum(np.ldexp(1.0, -self.lengths)))

    def expected_length(self, probs: np.ndarray) -> float:
        return float(np.dot(probs, self.lengths))

    def window_table(self, bits: int = WINDOW_BITS, most: int = WINDOW_SYMBOLS) -> tuple[np.ndarray, ...]:
        """For every `bits`-bit window v: the sorted indices of the whole codes at its start, read
        greedily (at most `most`; shape (2^bits, most)), how many (0: the first code is longer
        than the window) and the bits they use (cached).

        A code of length l read from a window padded with zeros is right whenever l <= the bits
        left: canonical codes are intervals of the left-justified `starts`, fixed by their first
        l bits."""
        key = (bits, most)
        if key not in self._windows:
            L = self.max_len
            v = np.arange(1 << bits, dtype=np.uint64)
            used = np.zeros(v.size, dtype=np.int64)
            count = np.zeros(v.size, dtype=np.int64)
            syms = np.zeros((v.size, most), dtype=np.int32)
            mask = np.uint64((1 << bits) - 1)
            for m in range(most):
                rest = (v << used.astype(np.uint64)) & mask  # the window after the codes read so far
                x = rest << np.uint64(L - bits) if L >= bits else rest >> np.uint64(bits - L)
                j = np.searchsorted(self.starts, x, side="right") - 1
                ln = self.sorted_lengths[j]
                ok = (count == m) & (ln <= bits - used)
                syms[:, m] = np.where(ok, j, 0)
                count += ok
                used += np.where(ok, ln, 0)
            self._windows[key] = (syms, count, used.astype(np.uint64))
        return self._windows[key]


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
        if cap <= DOUBLING_MAX_BITS:
            # every bit position p: the code starting there (j) and the next position p + len(j);
            # J_i = J_{i-1} o J_{i-1} jumps 2^i symbols, and each lane's positions follow by halving
            at = np.arange(cap + 1, dtype=np.int64)
            win = peek(words, at, L)
            # a lookup table of 2^L entries only where it is not far larger than the stream
            if L <= _LUT_MAX_LEN and 1 << L <= 4 * (cap + 1):
                lut = np.repeat(np.arange(code.order.size, dtype=np.int32),
                                np.left_shift(1, L - code.sorted_lengths))
                j_at, len_at = lut[win], code.sorted_lengths[lut][win]
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
        if 3 * (8 * len(data)) <= WINDOW_BITS * count:
            # short codes on average (<= a third of the window): several per window and pass
            return code.order[_decode_windows(code, data, pos, steps, cap)[:count]].astype(np.int32)
        out = np.empty((steps, pos.size), dtype=np.int32)
        slen = code.sorted_lengths
        if L <= _LUT_MAX_LEN:
            lut = np.repeat(np.arange(code.order.size, dtype=np.int32), np.left_shift(1, L - slen))
            lut_len = slen[lut]
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


def _decode_windows(code: HuffmanCode, data: bytes, pos: np.ndarray, steps: int, cap: int) -> np.ndarray:
    """The first `steps` sorted code indices of every lane starting at bit `pos` (lane-major, flat).

    Per pass, each lane reads a `WINDOW_BITS` window and takes all the whole codes in it
    (`HuffmanCode.window_table`); a lane whose next code is longer than the window takes that
    one code instead. Lanes that are done keep reading (into zero padding, and into their buffer's
    spare end) until every lane is."""
    bits = WINDOW_BITS
    syms, count, used = code.window_table(bits)
    most, L = syms.shape[1], code.max_len
    lanes = pos.size
    # a pass reads at most max(bits, L) bits per lane, and there are at most steps + 4 passes
    raw = np.frombuffer(data, dtype=np.uint8)
    buf = np.zeros(raw.size + max(bits, L) * (steps + 4) // 8 + 16, dtype=np.uint8)
    buf[: raw.size] = raw
    # the big-endian 64-bit word at every byte offset (an unaligned strided view, no copy)
    word_at = np.ndarray((buf.size - 7,), dtype=">u8", buffer=buf, strides=(1,))
    stride = steps + most
    out = np.zeros(lanes * stride, dtype=np.int32)
    base = np.arange(lanes, dtype=np.int64) * stride
    n_out = np.zeros(lanes, dtype=np.int64)
    cols = np.arange(most, dtype=np.int64)
    p = np.minimum(pos, cap).astype(np.uint64)
    has_long = bool((count == 0).any())  # some code is longer than the window
    seven, win_shift, long_shift = np.uint64(7), np.uint64(64 - bits), np.uint64(64 - L)
    while int(n_out.min()) < steps:
        for _ in range(4):  # the stop test costs a pass over the lanes: every 4 passes
            win = (word_at[p >> np.uint64(3)] << (p & seven)) >> win_shift
            c = count[win]
            at = base + n_out
            out[at[:, None] + cols] = syms[win]
            if has_long and not c.all():
                long = np.flatnonzero(c == 0)
                q = p[long]
                x = (word_at[q >> np.uint64(3)] << (q & seven)) >> long_shift
                j = np.searchsorted(code.starts, x, side="right") - 1
                out[at[long]] = j
                c[long] = 1
                p[long] += code.sorted_lengths[j].astype(np.uint64)
            p += used[win]
            n_out += c
            np.minimum(n_out, steps, out=n_out)
    return out.reshape(lanes, stride)[:, :steps].ravel()
