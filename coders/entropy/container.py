"""The blob container: header, chunk table, chunk payloads, escape section.

Layout (little endian): a 40-byte header (magic "GSC1", coder id, dtype code, n, chunk size,
chunk count, table lo, table size, model crc32), a u64 byte length per chunk and one for the
escape section, then the chunk payloads, then the escape section (u8 width, packed zigzag values).
The framing is not counted by `code_length` (it is the same for every model and coder).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from coders.entropy.bitpack import pack_bits, peek, stream_words, unpack_bits
from coders.models import escape_width, unzigzag, zigzag

MAGIC = b"GSC1"
HEADER = struct.Struct("<4sBBxxqIIqII")
DTYPES = {1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64}
"""Header dtype code -> the integer dtype of symbols coded without a model (zstd)."""


def narrow_dtype_code(s: np.ndarray) -> int:
    """Code (in `DTYPES`) of the narrowest integer dtype that holds every symbol."""
    if s.size == 0:
        return 1
    lo, hi = int(s.min()), int(s.max())
    for code, dt in DTYPES.items():
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return code
    return 4


@dataclass
class Header:
    """What the first bytes of a blob say."""

    coder_id: int
    dtype_code: int
    n: int
    chunk_size: int
    n_chunks: int
    lo: int
    table_size: int
    crc: int


def pack_escapes(e: np.ndarray) -> bytes:
    """The escape section: u8 width, then the zigzagged values at that width (b"" when none)."""
    if e.size == 0:
        return b""
    w = escape_width(e)
    z = zigzag(e)
    if w <= 32:
        body = pack_bits(z, np.full(z.size, w))[0]
    else:
        # wider than 32 bits: high part then low 32 bits, interleaved per value
        v = np.empty(2 * z.size, dtype=np.uint64)
        v[0::2], v[1::2] = z >> np.uint64(32), z & np.uint64(0xFFFFFFFF)
        lens = np.empty(2 * z.size, dtype=np.int64)
        lens[0::2], lens[1::2] = w - 32, 32
        body = pack_bits(v, lens)[0]
    return bytes([w]) + body.tobytes()


def unpack_escapes(data: bytes, count: int) -> np.ndarray:
    """Inverse of `pack_escapes` for `count` values."""
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
        words = stream_words(body)
        pos = (w * np.arange(count, dtype=np.int64))
        z = (peek(words, pos, hi_w) << np.uint64(32)) | peek(words, pos + hi_w, 32)
    return unzigzag(z)


def write_blob(h: Header, payloads: list[bytes], escapes: bytes) -> bytes:
    """header + chunk table + payloads + escape section."""
    header = HEADER.pack(MAGIC, h.coder_id, h.dtype_code, h.n, h.chunk_size, len(payloads), h.lo,
                         h.table_size, h.crc)
    table = np.array([len(p) for p in payloads] + [len(escapes)], dtype="<u8").tobytes()
    return header + table + b"".join(payloads) + escapes


def read_header(blob: bytes) -> Header:
    """The header of a blob; ValueError for a short or foreign one."""
    if len(blob) < HEADER.size:
        raise ValueError("decode: blob too short for a header")
    magic, cid, dcode, n, chunk_size, n_chunks, lo, tsize, crc = HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise ValueError("decode: not a gradstats coder blob (bad magic)")
    return Header(cid, dcode, n, chunk_size, n_chunks, lo, tsize, crc)


def read_sections(blob: bytes, h: Header) -> tuple[list[bytes], bytes]:
    """(chunk payloads, escape section); ValueError for a truncated or corrupt blob."""
    off = HEADER.size
    n_chunks = h.n_chunks
    if n_chunks != (-(-h.n // h.chunk_size) if h.chunk_size else -1) or len(blob) < off + 8 * (n_chunks + 1):
        raise ValueError("decode: blob is truncated or corrupt (its chunk table does not fit)")
    sizes = np.frombuffer(blob, dtype="<u8", count=n_chunks + 1, offset=off)
    off += 8 * (n_chunks + 1)
    if int(sizes.max()) >= len(blob) + 1 or off + int(sizes.sum()) != len(blob):
        raise ValueError(f"decode: blob is truncated or corrupt ({len(blob)} bytes, its tables "
                         f"announce {off + int(sizes.sum(dtype=np.uint64))})")
    parts = []
    for size in sizes.astype(np.int64):
        parts.append(blob[off : off + size])
        off += size
    return parts[:-1], parts[-1]
