"""Entropy coders for integer symbols under a `ProbabilityModel`: Huffman, ANS, range; zstd baseline.

- "ans": asymmetric numeral systems (Duda 2009) via `constriction.stream.stack.AnsCoder`,
- "range": range coding (Martin 1979) via `constriction.stream.queue.RangeEncoder`,
  both with `constriction.stream.model.Categorical(probs, perfect=False)` (24-bit probabilities);
- "huffman": canonical Huffman code (Huffman 1952; canonical form as in DEFLATE, RFC 1951)
  built here from the model's table, length-limited to 32 bits, bit-packed with numpy; the
  symbols of a chunk are cut into lanes of `HUFFMAN_LANE` symbols whose bit lengths are stored
  (the lane table), so the decoder walks all lanes at once (vectorized);
- "zstd" / "zstd-3" / "zstd-19": zstandard on the symbol bytes (narrowest integer dtype); the
  model is ignored. `zstd_raw_bits` is the baseline on the raw float32 / bf16 values.

`encode(symbols, model, coder) -> bytes`, `decode(blob, model, n, coder) -> np.int64 symbols`
(exact roundtrip for any int64 input: symbols outside the model's table are coded as the escape
entry plus a raw zigzag value), `code_length(symbols, model, coder) -> bits` (payload + model side
information; Huffman without materializing the stream). Symbols are coded in chunks of
`chunk_size` (default 2^20) so memory stays bounded for huge tensors.

Blob layout (little endian): a 40-byte header (magic "GSC1", coder, dtype code, n, chunk size,
chunk count, table lo, table size, model crc32), a u64 byte length per chunk and one for the
escape section, then the chunk payloads, then the escape section (u8 width, packed values).
`code_length` counts the information bits of the payloads (ANS/range: whole 32-bit words as
`num_bits()` reports them; Huffman: code bits + lane table; zstd: bytes * 8) and the escape
section; the framing (header, chunk table, byte padding) is not counted.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from coders.models import (
    ProbabilityModel,
    as_symbols,
    escape_section_bits,
    escape_width,
    histogram_model,
    unzigzag,
    zigzag,
)

DEFAULT_CHUNK = 1 << 20
HUFFMAN_MAX_LEN = 32
HUFFMAN_LANE = 4096
_LUT_MAX_LEN = 20
_MAGIC = b"GSC1"
_HEADER = struct.Struct("<4sBBxxqIIqII")
_CODER_IDS = {"ans": 1, "range": 2, "huffman": 3, "zstd": 4}
_ZSTD_DTYPES = {1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64}
CODERS = ("ans", "range", "huffman", "zstd-3", "zstd-19")


def _parse_coder(coder: str) -> tuple[str, int]:
    """('ans' | 'range' | 'huffman' | 'zstd', zstd level)."""
    if not isinstance(coder, str):
        raise ValueError(f"coder must be a name, got {coder!r}")
    c = coder.lower()
    if c in ("ans", "range", "huffman"):
        return c, 0
    if c == "zstd":
        return "zstd", 3
    if c.startswith("zstd-"):
        try:
            level = int(c[5:])
        except ValueError:
            level = 0
        if 1 <= level <= 22:
            return "zstd", level
    raise ValueError(f"unknown coder {coder!r}; use one of ans, range, huffman, zstd-<level 1..22>")


# ----------------------------------------------------------------------------------------------
# bit packing (MSB first)


def pack_bits(values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, int]:
    """Concatenate the low `lengths[i]` bits of each value (MSB first) -> (uint8 array, total bits).

    Lengths in [0, 64]. Vectorized: each value lands in at most two 64-bit words; values that
    start in the same word are summed (their bits are disjoint, so sum == or) by `reduceat`.
    """
    values = np.asarray(values, dtype=np.uint64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8), 0
    if lengths.min() < 0 or lengths.max() > 64:
        raise ValueError("pack_bits: lengths must be in [0, 64]")
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    starts = ends - lengths
    w = starts >> 6
    sh = 64 - (starts & 63) - lengths
    ul = lengths.astype(np.uint64)
    mask = np.where(lengths >= 64, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << ul) - np.uint64(1))
    vals = values & mask
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


def _words(data: bytes | np.ndarray) -> np.ndarray:
    """Bytes -> native uint64 words (MSB-first stream), padded with two zero words."""
    b = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    nw = (b.size + 7) // 8 + 2
    buf = np.zeros(nw * 8, dtype=np.uint8)
    buf[: b.size] = b
    return buf.view(">u8").astype(np.uint64)


def _peek(words: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
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
    words = _words(data)
    pos = start + width * np.arange(count, dtype=np.int64)
    if (pos[-1] + width + 7) // 8 > words.size * 8:
        raise ValueError("unpack_bits: stream too short")
    return _peek(words, pos, width)


# ----------------------------------------------------------------------------------------------
# Huffman


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
    def codebook_entries(self) -> int:
        return int(self.lengths.size)

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


def huffman_code(model: ProbabilityModel) -> HuffmanCode:
    """The model's canonical Huffman code (built once per model)."""
    code = model._cache.get("huffman")
    if code is None:
        code = model._cache["huffman"] = canonical_huffman(model.probs)
    return code


def _huffman_chunk_bits(code: HuffmanCode, idx: np.ndarray, lane: int) -> int:
    lens = code.lengths[idx]
    bits = int(lens.sum())
    k = -(-idx.size // lane)
    if k > 1:
        seg = np.add.reduceat(lens, np.arange(0, idx.size, lane))[:-1]
        bits += 6 + (k - 1) * max(1, int(seg.max()).bit_length())
    return bits


def _huffman_encode_chunk(code: HuffmanCode, idx: np.ndarray, lane: int) -> bytes:
    lens = code.lengths[idx]
    stream, _ = pack_bits(code.codes[idx], lens)
    k = -(-idx.size // lane)
    head = b""
    if k > 1:
        seg = np.add.reduceat(lens, np.arange(0, idx.size, lane))[:-1]
        w = max(1, int(seg.max()).bit_length())
        table, _ = pack_bits(seg.astype(np.uint64), np.full(k - 1, w))
        head = struct.pack("<BI", w, table.size) + table.tobytes()
    return head + stream.tobytes()


def _huffman_decode_chunk(code: HuffmanCode, data: bytes, count: int, lane: int) -> np.ndarray:
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
    words = _words(data)
    cap = (words.size - 2) * 64
    L = code.max_len
    if L <= _LUT_MAX_LEN:
        lut = np.repeat(np.arange(code.order.size, dtype=np.int32),
                        np.left_shift(1, L - code.sorted_lengths))
        lut_len = code.sorted_lengths[lut]
    out = np.empty((steps, pos.size), dtype=np.int32)
    slen = code.sorted_lengths
    for t in range(steps):
        win = _peek(words, np.minimum(pos, cap), L)
        if L <= _LUT_MAX_LEN:
            j = lut[win]
            pos += lut_len[win]
        else:
            j = np.searchsorted(code.starts, win, side="right") - 1
            pos += slen[j]
        out[t] = j
    return code.order[out.T.ravel()[:count]].astype(np.int32)


# ----------------------------------------------------------------------------------------------
# constriction (ANS, range)


def _categorical(model: ProbabilityModel) -> Any:
    import constriction

    cat = model._cache.get("categorical")
    if cat is None:
        cat = model._cache["categorical"] = constriction.stream.model.Categorical(
            model.probs, perfect=False)
    return cat


def _stream_encode_chunk(kind: str, model: ProbabilityModel, idx: np.ndarray) -> tuple[np.ndarray, int]:
    import constriction

    cat = _categorical(model)
    if kind == "ans":
        enc = constriction.stream.stack.AnsCoder()
        enc.encode_reverse(idx, cat)
    else:
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(idx, cat)
    return enc.get_compressed(), int(enc.num_bits())


def _stream_decode_chunk(kind: str, model: ProbabilityModel, data: bytes, count: int) -> np.ndarray:
    import constriction

    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    cat = _categorical(model)
    dec = (constriction.stream.stack.AnsCoder(words) if kind == "ans"
           else constriction.stream.queue.RangeDecoder(words))
    return np.asarray(dec.decode(cat, count), dtype=np.int32)


# ----------------------------------------------------------------------------------------------
# zstd


def _zstd_dtype(s: np.ndarray) -> int:
    if s.size == 0:
        return 1
    lo, hi = int(s.min()), int(s.max())
    for code, dt in _ZSTD_DTYPES.items():
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return code
    return 4


def _zstd_compress(data: bytes, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


def zstd_raw_bits(x: Any, dtype: str = "float32", level: int = 3) -> int:
    """Bits of zstd(level) on the raw float32 or bf16 bytes of x (the baseline a user tries first)."""
    import torch

    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    t = t.reshape(-1)
    if dtype == "float32":
        raw = t.float().numpy().tobytes()
    elif dtype in ("bfloat16", "bf16"):
        raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    else:
        raise ValueError(f"zstd_raw_bits: dtype must be float32 or bf16, got {dtype!r}")
    if not raw:
        return 0
    return 8 * sum(len(_zstd_compress(raw[i : i + (DEFAULT_CHUNK * 4)], level))
                   for i in range(0, len(raw), DEFAULT_CHUNK * 4))


# ----------------------------------------------------------------------------------------------
# public API


def _check_model(model: Any, kind: str) -> ProbabilityModel | None:
    if kind == "zstd":
        return None
    if not isinstance(model, ProbabilityModel):
        raise ValueError(f"coder {kind!r} needs a ProbabilityModel (e.g. coders.histogram_model(symbols)), "
                         f"got {type(model).__name__}")
    return model


def _check_chunk(chunk_size: int) -> int:
    if not 1 <= int(chunk_size) <= 1 << 31:
        raise ValueError(f"chunk_size must be in [1, 2^31], got {chunk_size}")
    return int(chunk_size)


def _indices(m: ProbabilityModel, part: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(table indices, escaped values or None)."""
    if part.size and int(part.min()) >= m.lo and int(part.max()) <= m.hi:
        idx = np.empty(part.shape, dtype=np.int32)
        np.subtract(part, np.int64(m.lo), out=idx, casting="unsafe")
        return idx, None
    idx = m.indices(part)
    return idx, (part[idx == m.escape] if part.size else None)


def encode(symbols: Any, model: ProbabilityModel | None = None, coder: str = "ans", *,
           chunk_size: int = DEFAULT_CHUNK, lane: int = HUFFMAN_LANE) -> bytes:
    """Entropy-code integer symbols with `model` -> self-delimiting bytes (see module docstring)."""
    kind, level = _parse_coder(coder)
    s = as_symbols(symbols)
    m = _check_model(model, kind)
    chunk_size = _check_chunk(chunk_size)
    n = s.size
    payloads: list[bytes] = []
    esc_parts: list[np.ndarray] = []
    dcode = _zstd_dtype(s) if kind == "zstd" else 0
    for a in range(0, n, chunk_size):
        part = s[a : a + chunk_size]
        if kind == "zstd":
            payloads.append(_zstd_compress(part.astype(_ZSTD_DTYPES[dcode]).tobytes(), level))
            continue
        idx, esc = _indices(m, part)
        if esc is not None:
            esc_parts.append(esc)
        if kind == "huffman":
            payloads.append(_huffman_encode_chunk(huffman_code(m), idx, lane))
        else:
            words, _ = _stream_encode_chunk(kind, m, idx)
            payloads.append(words.astype("<u4").tobytes())
    esc_bytes = b""
    if esc_parts:
        e = np.concatenate(esc_parts)
        w = escape_width(e)
        esc_bytes = bytes([w]) + _pack_escapes(e, w).tobytes()
    header = _HEADER.pack(
        _MAGIC, _CODER_IDS[kind], dcode, n, chunk_size, len(payloads),
        0 if m is None else m.lo, 0 if m is None else m.table_size, 0 if m is None else m.fingerprint())
    table = np.array([len(p) for p in payloads] + [len(esc_bytes)], dtype="<u8").tobytes()
    return header + table + b"".join(payloads) + esc_bytes


def _pack_escapes(e: np.ndarray, w: int) -> np.ndarray:
    z = zigzag(e)
    if w <= 32:
        return pack_bits(z, np.full(z.size, w))[0]
    # wider than 32 bits: high part then low 32 bits, interleaved per value
    v = np.empty(2 * z.size, dtype=np.uint64)
    v[0::2], v[1::2] = z >> np.uint64(32), z & np.uint64(0xFFFFFFFF)
    lens = np.empty(2 * z.size, dtype=np.int64)
    lens[0::2], lens[1::2] = w - 32, 32
    return pack_bits(v, lens)[0]


def _unpack_escapes(data: bytes, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if not data:
        raise ValueError("decode: escape section missing")
    w = data[0]
    body = data[1:]
    if w <= 32:
        z = unpack_bits(body, w, count)
    else:
        hi_w = w - 32
        words = _words(body)
        pos = (w * np.arange(count, dtype=np.int64))
        z = (_peek(words, pos, hi_w) << np.uint64(32)) | _peek(words, pos + hi_w, 32)
    return unzigzag(z)


def decode(blob: bytes, model: ProbabilityModel | None = None, n: int | None = None,
           coder: str | None = None, *, lane: int = HUFFMAN_LANE) -> np.ndarray:
    """Inverse of `encode`: the int64 symbols. `n` and `coder`, when given, are checked."""
    if len(blob) < _HEADER.size:
        raise ValueError("decode: blob too short for a header")
    magic, cid, dcode, n_blob, chunk_size, n_chunks, lo, tsize, crc = _HEADER.unpack_from(blob, 0)
    if magic != _MAGIC:
        raise ValueError("decode: not a gradstats coder blob (bad magic)")
    kinds = {v: k for k, v in _CODER_IDS.items()}
    if cid not in kinds:
        raise ValueError(f"decode: unknown coder id {cid}")
    kind = kinds[cid]
    if coder is not None and _parse_coder(coder)[0] != kind:
        raise ValueError(f"decode: blob was written by {kind!r}, not {coder!r}")
    if n is not None and int(n) != n_blob:
        raise ValueError(f"decode: blob holds {n_blob} symbols, not {n}")
    m = _check_model(model, kind)
    if m is not None and (m.lo != lo or m.table_size != tsize or m.fingerprint() != crc):
        raise ValueError("decode: the model differs from the one the blob was encoded with")
    off = _HEADER.size
    if n_chunks != (-(-n_blob // chunk_size) if chunk_size else -1) or len(blob) < off + 8 * (n_chunks + 1):
        raise ValueError("decode: blob is truncated or corrupt (its chunk table does not fit)")
    sizes = np.frombuffer(blob, dtype="<u8", count=n_chunks + 1, offset=off)
    off += 8 * (n_chunks + 1)
    if int(sizes.max()) >= len(blob) + 1 or off + int(sizes.sum()) != len(blob):
        raise ValueError(f"decode: blob is truncated or corrupt ({len(blob)} bytes, its tables "
                         f"announce {off + int(sizes.sum(dtype=np.uint64))})")
    sizes = sizes.astype(np.int64)
    out = np.empty(n_blob, dtype=np.int64)
    for c in range(n_chunks):
        a = c * chunk_size
        count = min(chunk_size, n_blob - a)
        data = blob[off : off + sizes[c]]
        off += sizes[c]
        if kind == "zstd":
            try:
                raw = _zstd_decompress(data)
            except Exception as err:  # zstandard.ZstdError
                raise ValueError(f"decode: zstd chunk {c} is corrupt: {err}") from err
            vals = np.frombuffer(raw, dtype=_ZSTD_DTYPES[dcode])
            if vals.size != count:
                raise ValueError("decode: zstd chunk has the wrong length")
            out[a : a + count] = vals
            continue
        if kind == "huffman":
            idx = _huffman_decode_chunk(huffman_code(m), data, count, lane)
        else:
            idx = _stream_decode_chunk(kind, m, data, count)
        np.add(idx, np.int64(m.lo), out=out[a : a + count], casting="unsafe")
    if m is not None and sizes[n_chunks] > 0:
        esc = np.flatnonzero(out == m.lo + m.escape)
        out[esc] = _unpack_escapes(blob[off : off + sizes[n_chunks]], esc.size)
    return out


def code_length(symbols: Any, model: ProbabilityModel | str | None = None, coder: str = "ans", *,
                include_side: bool = True, chunk_size: int = DEFAULT_CHUNK, lane: int = HUFFMAN_LANE) -> int:
    """Bits to send the symbols with `coder`: payload + escape section (+ model side bits).

    `model=None` or "histogram" builds the empirical model of the symbols themselves (its side
    bits, the coded histogram, are then included unless `include_side=False`). ANS/range run the
    coder chunk by chunk and sum constriction's `num_bits()`; Huffman sums the code lengths
    without building the stream; zstd compresses and counts bytes (model ignored, no side bits).
    """
    kind, level = _parse_coder(coder)
    s = as_symbols(symbols)
    chunk_size = _check_chunk(chunk_size)
    if kind == "zstd":
        d = _ZSTD_DTYPES[_zstd_dtype(s)]
        return sum(8 * len(_zstd_compress(s[a : a + chunk_size].astype(d).tobytes(), level))
                   for a in range(0, s.size, chunk_size))
    if model is None or (isinstance(model, str) and model in ("histogram", "empirical")):
        model = histogram_model(s)
    m = _check_model(model, kind)
    bits = 0
    esc_parts = []
    for a in range(0, s.size, chunk_size):
        part = s[a : a + chunk_size]
        idx, esc = _indices(m, part)
        if esc is not None:
            esc_parts.append(esc)
        if kind == "huffman":
            bits += _huffman_chunk_bits(huffman_code(m), idx, lane)
        else:
            bits += _stream_encode_chunk(kind, m, idx)[1]
    if esc_parts:
        bits += escape_section_bits(np.concatenate(esc_parts))
    return bits + (m.side_bits if include_side else 0)


__all__ = [
    "CODERS", "encode", "decode", "code_length", "zstd_raw_bits", "canonical_huffman", "huffman_code",
    "huffman_lengths", "HuffmanCode", "pack_bits", "unpack_bits",
]
