"""Coding a whole symbol stream: chunks of `chunk_size` through a `Coder`, escapes, the container.

`encode(symbols, model, coder) -> bytes`, `decode(blob, model, n, coder) -> np.int64 symbols`
(exact roundtrip for any int64 input: symbols outside the model's table are coded as the escape
entry plus a raw zigzag value), `code_length(symbols, model, coder) -> bits` (payload + escape
section + model side information). Symbols are coded in chunks (default 2^20) so memory stays
bounded for huge tensors.

When a report codes one tensor with many models and coders, the per-entry work is done once:
`table_indices` (the table indices and escaped values of a model, shared by its coders),
`encode_counted` (the blob and its payload bits from the same encode: ANS / range sizes are the
encoder's own), and `huffman_size` (a Huffman payload's bits and its blob's bytes from the symbol
histogram per lane, no stream built: sum over lanes of sum_s c_lane(s) len(s), plus lane tables
and the escape section; `encode_counted` of the same symbols reports exactly these).

Checking part of a stream (`verify="sample"` of `coders.report`): `sample_window` draws a window
inside one chunk, `decode_prefix` decodes the start of one chunk of a blob (ANS / range stop
after it), `huffman_window_size` gives the bits and bytes of a window's lanes coded as one chunk
from the same lane histograms as `huffman_size`.

`decode` raises `CorruptBlobError` (a ValueError) and nothing else for a blob it cannot decode
as asked: truncated, bit-flipped (the blob's crc32, `coders.entropy.container`), foreign, or
coded with another model, coder or length.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from coders.entropy.container import (
    DTYPES,
    FLAG_CRC,
    HEADER,
    CorruptBlobError,
    Header,
    narrow_dtype_code,
    pack_escapes,
    read_header,
    read_sections,
    unpack_escapes,
    write_blob,
)
from coders.entropy.huffman import HUFFMAN_LANE, chunk_size_of_lanes, huffman_code
from coders.entropy.registry import BY_WIRE_ID, make_coder
from coders.models import ProbabilityModel, as_symbols, escape_section_bits, histogram_model
from coders.models.histogram import SymbolHistogram

DEFAULT_CHUNK = 1 << 20


def _check_model(model: Any, coder: Any) -> ProbabilityModel | None:
    if not coder.uses_model:
        return None
    if not isinstance(model, ProbabilityModel):
        raise ValueError(f"coder {coder.name!r} needs a ProbabilityModel (e.g. "
                         f"coders.histogram_model(symbols)), got {type(model).__name__}")
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


def _chunks(s: np.ndarray, m: ProbabilityModel | None, chunk_size: int, dcode: int):
    """(values the coder sees, escaped values or None) per chunk."""
    for a in range(0, s.size, chunk_size):
        part = s[a : a + chunk_size]
        if m is None:
            yield part.astype(DTYPES[dcode]), None
        else:
            yield _indices(m, part)


def table_indices(symbols: Any, model: ProbabilityModel,
                  histogram: SymbolHistogram | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int32 table index of every symbol, the escaped symbols in order): what `encode` codes.

    With the symbols' `histogram`, a table that holds every symbol costs one subtraction pass."""
    s = as_symbols(symbols)
    if histogram is not None and histogram.n and model.lo <= histogram.lo and histogram.hi <= model.hi:
        idx = np.empty(s.shape, dtype=np.int32)
        np.subtract(s, np.int64(model.lo), out=idx, casting="unsafe")
        return idx, np.zeros(0, dtype=np.int64)
    idx = model.indices(s)
    return idx, s[idx == model.escape] if s.size else np.zeros(0, dtype=np.int64)


def encode(symbols: Any, model: ProbabilityModel | None = None, coder: str = "ans", *,
           chunk_size: int = DEFAULT_CHUNK, lane: int = HUFFMAN_LANE, checksum: bool = True) -> bytes:
    """Entropy-code integer symbols with `model` -> self-delimiting bytes (`coders.entropy.container`).

    `checksum`: fill in the blob's crc32 (its four bytes are in the header either way), so that
    `decode` detects any corruption before decoding.
    """
    return encode_counted(symbols, model, coder, chunk_size=chunk_size, lane=lane, checksum=checksum)[0]


def encode_counted(symbols: Any, model: ProbabilityModel | None = None, coder: str = "ans", *,
                   chunk_size: int = DEFAULT_CHUNK, lane: int = HUFFMAN_LANE, checksum: bool = True,
                   indices: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[bytes, int]:
    """(`encode(...)`, the payload bits `code_length(..., include_side=False)` counts for it), both
    from one encode: each chunk's bits are the ones its encoder reports (`Coder.encode_chunk_counted`).

    `indices`: `table_indices(symbols, model)` when the caller has them (shared by its coders).
    """
    c = make_coder(coder, lane=lane)
    s = as_symbols(symbols)
    m = _check_model(model, c)
    chunk_size = _check_chunk(chunk_size)
    dcode = 0 if c.uses_model else narrow_dtype_code(s)
    payloads: list[bytes] = []
    esc_parts: list[np.ndarray] = []
    bits = 0
    if m is not None and indices is not None:
        idx, esc = indices
        if idx.shape != s.shape:
            raise ValueError(f"encode_counted: {idx.size} indices for {s.size} symbols")
        parts = ((idx[a : a + chunk_size], None) for a in range(0, s.size, chunk_size))
        esc_parts = [esc] if esc.size else []
    else:
        parts = _chunks(s, m, chunk_size, dcode)
    for values, esc in parts:
        if esc is not None:
            esc_parts.append(esc)
        data, chunk_bits = c.encode_chunk_counted(values, m)
        payloads.append(data)
        bits += chunk_bits
    escaped = np.concatenate(esc_parts) if esc_parts else np.zeros(0, dtype=np.int64)
    escapes = pack_escapes(escaped) if escaped.size else b""
    header = Header(c.wire_id, dcode, s.size, chunk_size, 0 if m is None else m.lo,
                    0 if m is None else m.table_size, 0 if m is None else m.fingerprint(),
                    FLAG_CRC if checksum else 0)
    return write_blob(header, payloads, escapes), bits + escape_section_bits(escaped)


def huffman_lane_bits(histogram: SymbolHistogram, model: ProbabilityModel, *, chunk_size: int = DEFAULT_CHUNK,
                      lane: int = HUFFMAN_LANE) -> np.ndarray:
    """Code bits of every lane (the lanes of chunk 0, then of chunk 1, ...) of the symbols under
    `model`'s Huffman code: sum_s c_lane(s) len(s) (`SymbolHistogram.lane_counts`; per entry when
    that matrix would be too large)."""
    chunk_size = _check_chunk(chunk_size)
    h, n = histogram, histogram.n
    lengths = huffman_code(model).lengths
    counts = h.lane_counts(chunk_size, lane)
    if counts is not None:
        sym = np.arange(h.lo, h.hi + 1, dtype=np.int64)
        inside = (sym >= model.lo) & (sym <= model.hi)
        lens = np.where(inside, lengths[np.where(inside, sym - model.lo, 0)], lengths[model.escape])
        return counts @ lens
    c = make_coder("huffman", lane=lane)
    idx, _ = table_indices(h.symbols, model)
    return np.concatenate([c.lane_bits(idx[a : a + chunk_size], model)
                           for a in range(0, n, chunk_size)] or [np.zeros(0, dtype=np.int64)])


def huffman_size(histogram: SymbolHistogram, model: ProbabilityModel, *, chunk_size: int = DEFAULT_CHUNK,
                 lane: int = HUFFMAN_LANE) -> tuple[int, int]:
    """(payload bits `code_length(symbols, model, "huffman", include_side=False)` counts, bytes of
    `encode(symbols, model, "huffman")`) from the symbols' histogram, no stream built.

    Code bits of a lane = sum_s c_lane(s) len(s) (`huffman_lane_bits`), then per chunk its lane
    table (`chunk_size_of_lanes`), plus the escape section; the bytes add the container's framing
    (`framing_bits`) and paddings.
    """
    chunk_size = _check_chunk(chunk_size)
    h, n = histogram, histogram.n
    lane_bits = huffman_lane_bits(h, model, chunk_size=chunk_size, lane=lane)
    bits, nbytes, row = 0, 0, 0
    for a in range(0, n, chunk_size):
        k = -(-min(chunk_size, n - a) // lane)
        b, nb = chunk_size_of_lanes(lane_bits[row : row + k])
        bits, nbytes, row = bits + b, nbytes + nb, row + k
    esc = h.escape_bits(model)
    n_chunks = -(-n // chunk_size)
    framing = HEADER.size + 8 * (n_chunks + 1)
    return bits + esc, framing + nbytes + (-(-esc // 8))


def sample_window(n: int, window: int, rng: np.random.Generator, *, chunk_size: int = DEFAULT_CHUNK,
                  lane: int = HUFFMAN_LANE) -> tuple[int, int, int, int]:
    """A seeded window of at most `window` symbols inside one chunk of a stream of `n`:
    (start, stop, chunk, first lane of the chunk), the chunk drawn uniformly, then a lane-aligned
    start inside it (`window` rounded down to whole lanes when it is smaller than the chunk).

    What `verify="sample"` decodes (`coders.report`): ANS / range decode the window's chunk from
    its start up to `stop`; Huffman codes the window's lanes as one chunk (`huffman_window_size`)."""
    chunk_size = _check_chunk(chunk_size)
    if n <= 0:
        return 0, 0, 0, 0
    c = int(rng.integers(-(-n // chunk_size)))
    a, size = c * chunk_size, min(chunk_size, n - c * chunk_size)
    if size <= window:
        return a, a + size, c, 0
    lanes = -(-size // lane)
    k = max(1, window // lane)
    j = int(rng.integers(lanes - k + 1))
    return a + j * lane, min(a + (j + k) * lane, a + size), c, j


def huffman_window_size(histogram: SymbolHistogram, model: ProbabilityModel, chunk: int, first_lane: int,
                        lanes: int, *, chunk_size: int = DEFAULT_CHUNK,
                        lane: int = HUFFMAN_LANE) -> tuple[int, int]:
    """(bits, bytes) of lanes `first_lane` .. `first_lane + lanes - 1` of chunk `chunk` coded as one
    chunk (`HuffmanCoder.encode_chunk_counted` of their symbols), from the same per-lane code bits
    as `huffman_size` (`huffman_lane_bits`, `chunk_size_of_lanes`)."""
    chunk_size = _check_chunk(chunk_size)
    if chunk_size % lane and chunk:
        raise ValueError(f"huffman_window_size: chunk {chunk} of a chunk size {chunk_size} that is not whole "
                         f"lanes of {lane}")
    row = chunk * (chunk_size // lane) + first_lane
    lane_bits = huffman_lane_bits(histogram, model, chunk_size=chunk_size, lane=lane)
    return chunk_size_of_lanes(lane_bits[row : row + lanes])


_DECODE_FAULTS = (ValueError, IndexError, KeyError, AssertionError, OverflowError, TypeError,
                  struct.error, MemoryError, RuntimeError)
"""What a chunk decoder may raise on bytes that are not what it wrote (rust panics included)."""


def _open(blob: bytes, model: Any, n: int | None, coder: str | None, lane: int):
    """(coder, model, header, payloads, escapes) of a blob, every check of `decode` made."""
    h = read_header(blob)
    if h.coder_id not in BY_WIRE_ID:
        raise CorruptBlobError(f"decode: blob is truncated or corrupt (unknown coder id {h.coder_id})")
    kind = BY_WIRE_ID[h.coder_id]
    if coder is not None and make_coder(coder).name != kind:
        raise CorruptBlobError(f"decode: blob was written by {kind!r}, not {coder!r}")
    if n is not None and int(n) != h.n:
        raise CorruptBlobError(f"decode: blob holds {h.n} symbols, not {n}")
    c = make_coder(kind, lane=lane)
    m = _check_model(model, c)
    if m is not None and (m.lo != h.lo or m.table_size != h.table_size or m.fingerprint() != h.crc):
        raise CorruptBlobError("decode: the model differs from the one the blob was encoded with")
    if m is None and h.dtype_code not in DTYPES:
        raise CorruptBlobError(f"decode: blob is truncated or corrupt (dtype code {h.dtype_code})")
    payloads, escapes = read_sections(blob, h)
    return c, m, h, payloads, escapes


def _guarded(kind: str, fn, *args):
    """fn(*args) with every fault of a chunk decoder turned into `CorruptBlobError`."""
    try:
        return fn(*args)
    except CorruptBlobError:
        raise
    except _DECODE_FAULTS as err:
        raise CorruptBlobError(f"decode: blob is truncated or corrupt ({kind}: {type(err).__name__}: "
                               f"{err})") from err
    except BaseException as err:  # pyo3's PanicException (a rust panic in constriction) is no Exception
        if type(err).__name__ != "PanicException":
            raise
        raise CorruptBlobError(f"decode: blob is truncated or corrupt ({kind} panicked: {err})") from err


def decode(blob: bytes, model: ProbabilityModel | None = None, n: int | None = None,
           coder: str | None = None, *, lane: int = HUFFMAN_LANE) -> np.ndarray:
    """Inverse of `encode`: the int64 symbols. `n` and `coder`, when given, are checked.

    Raises `CorruptBlobError` (a ValueError) for any blob it cannot decode as asked; a model of
    the wrong type or an unknown coder name is a plain ValueError.
    """
    c, m, h, payloads, escapes = _open(blob, model, n, coder, lane)
    return _guarded(c.name, _decode_sections, c, m, h, payloads, escapes)


def decode_prefix(blob: bytes, model: ProbabilityModel, chunk: int, count: int, n: int | None = None,
                  coder: str | None = None, *, lane: int = HUFFMAN_LANE) -> np.ndarray:
    """The int32 table indices of the first `count` symbols of chunk `chunk` of a blob (escaped
    symbols as the escape entry), decoding no more of it than that where the coder allows: ANS and
    range decode a chunk from its start; a Huffman chunk is decoded whole (its lanes need it).

    The blob's header, model fingerprint and crc32 are checked as by `decode`; `CorruptBlobError`
    for a blob that cannot be decoded so."""
    c, m, h, payloads, _ = _open(blob, model, n, coder, lane)
    if m is None:
        raise ValueError(f"decode_prefix: coder {c.name!r} codes no table indices")
    size = min(h.chunk_size, h.n - chunk * h.chunk_size) if 0 <= chunk < len(payloads) else -1
    if not 0 <= count <= size:
        raise ValueError(f"decode_prefix: chunk {chunk}, count {count} outside the blob's {len(payloads)} "
                         f"chunks of {h.chunk_size}")
    if c.name == "huffman":
        idx = _guarded(c.name, c.decode_chunk, payloads[chunk], m, size, np.int32)[:count]
    else:
        idx = _guarded(c.name, c.decode_chunk, payloads[chunk], m, count, np.int32)
    idx = np.asarray(idx)
    if idx.shape != (count,) or (count and (int(idx.min()) < 0 or int(idx.max()) > m.escape)):
        raise CorruptBlobError(f"decode: blob is truncated or corrupt ({c.name} chunk {chunk} decodes "
                               "outside the table)")
    return idx


def _decode_sections(c: Any, m: ProbabilityModel | None, h: Header, payloads: list[bytes],
                     escapes: bytes) -> np.ndarray:
    out = np.empty(h.n, dtype=np.int64)
    esc_pos = []
    for i, data in enumerate(payloads):
        a = i * h.chunk_size
        count = min(h.chunk_size, h.n - a)
        if m is None:
            try:
                vals = c.decode_chunk(data, None, count, DTYPES[h.dtype_code])
            except ValueError as err:
                raise CorruptBlobError(f"decode: {c.name} chunk {i} {err}") from err
            if vals.size != count:
                raise CorruptBlobError(f"decode: {c.name} chunk {i} has {vals.size} symbols, not {count}")
            out[a : a + count] = vals
            continue
        idx = np.asarray(c.decode_chunk(data, m, count, np.int32))
        if idx.shape != (count,) or (count and (int(idx.min()) < 0 or int(idx.max()) > m.escape)):
            raise CorruptBlobError(f"decode: blob is truncated or corrupt ({c.name} chunk {i} decodes "
                                   "outside the table)")
        # lo + index, wrapping in int64 for the escape entry (its slot is overwritten below)
        np.add(idx, np.int64(m.lo), out=out[a : a + count], casting="unsafe")
        e = np.flatnonzero(idx == m.escape)
        if e.size:
            esc_pos.append(e + a)
    if m is not None:
        pos = np.concatenate(esc_pos) if esc_pos else np.zeros(0, dtype=np.int64)
        if pos.size:
            out[pos] = unpack_escapes(escapes, pos.size)
        elif escapes:
            raise CorruptBlobError("decode: blob is truncated or corrupt (an escape section but no escapes)")
        if pos.size and bool(((out[pos] >= m.lo) & (out[pos] <= m.hi)).any()):
            raise CorruptBlobError("decode: blob is truncated or corrupt (an escaped value inside the table)")
    elif escapes:
        raise CorruptBlobError("decode: blob is truncated or corrupt (an escape section without a model)")
    return out


def coded_cross_entropy(symbols: Any, model: ProbabilityModel, coder: str = "ans") -> float:
    """Bits per symbol under the probabilities `coder` actually uses for `model` (`Coder.code_probs`:
    the 24-bit table of ANS / range, 2^-length for Huffman), escapes charged their raw bits.

    payload bits >= n * this - (the coder's per-stream overhead), for every coder and model.
    `symbols` may be their `SymbolHistogram` (the same sum from its counts).
    """
    c = make_coder(coder)
    q = c.code_probs(model)
    if q is None:
        raise ValueError(f"coded_cross_entropy: coder {coder!r} has no probability model")
    if isinstance(symbols, SymbolHistogram):
        if symbols.n == 0:
            return 0.0
        counts = symbols.table_counts(model)
        return (float(np.dot(counts, -np.log2(q))) + symbols.escape_bits(model)) / symbols.n
    s = as_symbols(symbols)
    if s.size == 0:
        return 0.0
    idx = model.indices(s)
    counts = np.bincount(idx, minlength=model.table_size)
    bits = float(np.dot(counts, -np.log2(q))) + escape_section_bits(s[idx == model.escape])
    return bits / s.size


def code_length(symbols: Any, model: ProbabilityModel | str | None = None, coder: str = "ans", *,
                include_side: bool = True, chunk_size: int = DEFAULT_CHUNK, lane: int = HUFFMAN_LANE) -> int:
    """Bits to send the symbols with `coder`: payload + escape section (+ model side bits).

    `model=None` or "histogram" builds the empirical model of the symbols themselves (its side
    bits, the coded histogram, are then included unless `include_side=False`). Each chunk counts
    its coder's exact `chunk_bits` (ANS/range: constriction's `num_bits()`, whole 32-bit words;
    Huffman: code bits + lane table, without building the stream; zstd: bytes * 8, model
    ignored, no side bits). The container's framing is not counted: with `include_side=False`,
    8 * len(encode(...)) = `framing_bits(blob)` + this + the byte padding of the escape section
    and of each Huffman chunk (plus 34 bits of its lane-table header when it has several lanes).
    """
    c = make_coder(coder, lane=lane)
    s = as_symbols(symbols)
    chunk_size = _check_chunk(chunk_size)
    if not c.uses_model:
        dcode = narrow_dtype_code(s)
        return sum(c.chunk_bits(v, None) for v, _ in _chunks(s, None, chunk_size, dcode))
    if model is None or (isinstance(model, str) and model in ("histogram", "empirical")):
        model = histogram_model(s)
    m = _check_model(model, c)
    bits = 0
    esc_parts = []
    for values, esc in _chunks(s, m, chunk_size, 0):
        if esc is not None:
            esc_parts.append(esc)
        bits += c.chunk_bits(values, m)
    if esc_parts:
        bits += escape_section_bits(np.concatenate(esc_parts))
    return bits + (m.side_bits if include_side else 0)
