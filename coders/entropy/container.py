"""The blob container: header, chunk table, chunk payloads, escape section.

Layout (little endian): a 40-byte header (magic "GSC2", coder id, dtype code, flags, one zero
byte, n, chunk size, table lo, table size, model crc32, blob crc32), a u64 byte length per chunk
(ceil(n / chunk size) of them) and one for the escape section, then the chunk payloads, then the
escape section (u8 width, packed zigzag values).

The blob crc32 (flag `FLAG_CRC`, on by default) covers every byte of the blob but its own four,
so a flipped bit or a truncation anywhere is detected before anything is decoded (crc32 detects
every burst of up to 32 bits). It costs nothing extra: "GSC1" spent the same four bytes on the
chunk count, which is ceil(n / chunk size). The framing (header, chunk table, byte padding) is
not counted by `code_length`, being the same for every model and coder (`framing_bits`).

Anything wrong with a blob raises `CorruptBlobError` (a ValueError).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from coders.entropy.bitpack import pack_bits, peek, stream_words, unpack_bits
from coders.models import escape_width, unzigzag, zigzag

MAGIC = b"GSC2"
HEADER = struct.Struct("<4sBBBxqIqIII")
CRC_OFFSET = HEADER.size - 4
"""The blob crc32 is the header's last field."""
FLAG_CRC = 1
"""Header flag: the blob carries a crc32 of its other bytes."""


class CorruptBlobError(ValueError):
    """A blob that cannot be decoded: truncated, bit-flipped, foreign, or coded with another model."""

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
    lo: int
    table_size: int
    crc: int
    """The model's fingerprint (`ProbabilityModel.fingerprint`), 0 without a model."""
    flags: int = FLAG_CRC
    blob_crc: int = 0

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_size)


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
        raise CorruptBlobError("decode: blob is truncated or corrupt (escape section missing)")
    w = data[0]
    body = data[1:]
    if not 1 <= w <= 64 or len(body) != -(-(w * count) // 8):
        raise CorruptBlobError(f"decode: blob is truncated or corrupt (escape section of {len(data)} bytes "
                               f"for {count} escapes at width {w})")
    if w <= 32:
        z = unpack_bits(body, w, count)
    else:
        hi_w = w - 32
        words = stream_words(body)
        pos = (w * np.arange(count, dtype=np.int64))
        z = (peek(words, pos, hi_w) << np.uint64(32)) | peek(words, pos + hi_w, 32)
    return unzigzag(z)


def blob_crc(blob: bytes) -> int:
    """crc32 of every byte of the blob but the crc field itself."""
    return zlib.crc32(blob[HEADER.size:], zlib.crc32(blob[:CRC_OFFSET]))


def write_blob(h: Header, payloads: list[bytes], escapes: bytes) -> bytes:
    """header + chunk table + payloads + escape section (the crc32 filled in when `FLAG_CRC`)."""
    if len(payloads) != h.n_chunks:
        raise ValueError(f"write_blob: {len(payloads)} payloads for {h.n_chunks} chunks")
    header = HEADER.pack(MAGIC, h.coder_id, h.dtype_code, h.flags, h.n, h.chunk_size, h.lo,
                         h.table_size, h.crc, 0)
    table = np.array([len(p) for p in payloads] + [len(escapes)], dtype="<u8").tobytes()
    blob = bytearray(header + table + b"".join(payloads) + escapes)
    if h.flags & FLAG_CRC:
        struct.pack_into("<I", blob, CRC_OFFSET, blob_crc(blob))
    return bytes(blob)


def framing_bits(blob: bytes) -> int:
    """Bits of a blob's framing, which `code_length` does not count: the header and the chunk
    table, 8 * (40 + 8 * (chunks + 1)). The rest of the blob is the counted sections, each padded
    to whole bytes (ANS / range chunks are whole 32-bit words, so unpadded; the escape section and
    each Huffman chunk's lane table and stream end on a byte; a Huffman chunk of more than one lane
    also spends 40 bits on its lane table's width and byte count, of which `code_length` counts 6)."""
    h = read_header(blob)
    return 8 * (HEADER.size + 8 * (h.n_chunks + 1))


def read_header(blob: bytes) -> Header:
    """The header of a blob, its crc32 checked; `CorruptBlobError` for a short, foreign or
    corrupt one."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CorruptBlobError(f"decode: a blob is bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < HEADER.size:
        raise CorruptBlobError(f"decode: blob is truncated or corrupt ({len(blob)} bytes, shorter "
                               f"than the {HEADER.size}-byte header)")
    magic, cid, dcode, flags, n, chunk_size, lo, tsize, crc, bcrc = HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise CorruptBlobError(f"decode: not a gradstats coder blob (magic {magic!r}, expected {MAGIC!r})")
    if flags & ~FLAG_CRC:
        raise CorruptBlobError(f"decode: blob is truncated or corrupt (unknown header flags {flags:#x})")
    if flags & FLAG_CRC and blob_crc(blob) != bcrc:
        raise CorruptBlobError("decode: blob is truncated or corrupt (crc32 mismatch)")
    if not flags & FLAG_CRC and bcrc:  # a blob without the checksum has zeros there
        raise CorruptBlobError("decode: blob is truncated or corrupt (crc32 flag cleared)")
    if not (0 <= n < 1 << 62 and 1 <= chunk_size <= 1 << 31):
        raise CorruptBlobError(f"decode: blob is truncated or corrupt (n={n}, chunk size {chunk_size})")
    return Header(cid, dcode, n, chunk_size, lo, tsize, crc, flags, bcrc)


def read_sections(blob: bytes, h: Header) -> tuple[list[bytes], bytes]:
    """(chunk payloads, escape section); `CorruptBlobError` for a truncated or corrupt blob."""
    blob = bytes(blob)
    off = HEADER.size
    n_chunks = h.n_chunks
    if len(blob) < off + 8 * (n_chunks + 1):
        raise CorruptBlobError("decode: blob is truncated or corrupt (its chunk table does not fit)")
    sizes = np.frombuffer(blob, dtype="<u8", count=n_chunks + 1, offset=off)
    off += 8 * (n_chunks + 1)
    if int(sizes.max()) >= len(blob) + 1 or off + int(sizes.sum()) != len(blob):
        raise CorruptBlobError(f"decode: blob is truncated or corrupt ({len(blob)} bytes, its tables "
                         f"announce {off + int(sizes.sum(dtype=np.uint64))})")
    parts = []
    for size in sizes.astype(np.int64):
        parts.append(blob[off : off + size])
        off += size
    return parts[:-1], parts[-1]
