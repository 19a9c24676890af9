"""The blob container: header layout, truncated and corrupt blobs."""

import struct

import numpy as np
import pytest

from coders.entropy import (
    decode,
    encode,
)
from coders.entropy.container import HEADER, CorruptBlobError, blob_crc, framing_bits
from coders.models import histogram_model


def laplace_symbols(n, step=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.rint(rng.laplace(size=n) / step).astype(np.int64)


CODERS = ["ans", "range", "huffman", "zstd-3"]


def test_header_layout_is_documented_size():
    s = laplace_symbols(10)
    m = histogram_model(s)
    blob = encode(s, m, "ans")
    magic, cid, dcode, flags, n, chunk, lo, tsize, mcrc, bcrc = HEADER.unpack_from(blob, 0)
    assert HEADER.size == 40 and magic == b"GSC2" and cid == 1 and dcode == 0 and flags == 1
    assert (n, chunk, lo, tsize, mcrc) == (10, 1 << 20, m.lo, m.table_size, m.fingerprint())
    assert bcrc == blob_crc(blob) == struct.unpack_from("<I", blob, 36)[0]
    assert framing_bits(blob) == 8 * (40 + 16)
    # without the checksum the blob is as long, its crc field zero
    plain = encode(s, m, "ans", checksum=False)
    assert len(plain) == len(blob) and plain[36:40] == bytes(4) and plain[40:] == blob[40:]
    np.testing.assert_array_equal(decode(plain, m, s.size), s)


@pytest.mark.parametrize("coder", CODERS)
def test_truncated_or_corrupt_blobs_raise_value_error(coder):
    s = laplace_symbols(20_000, seed=6)
    s[7] = 10**6  # an escape section too
    m = histogram_model(s[:10_000])
    model = None if coder.startswith("zstd") else m
    blob = encode(s, model, coder, chunk_size=8192)
    header = 40 + 8 * (3 + 1)
    bad = {"one byte short": blob[:-1], "header only": blob[:40], "mid chunk table": blob[:60],
           "zeroed body": blob[:40] + bytes(len(blob) - 40), "one byte long": blob + b"\0"}
    for b in bad.values():
        with pytest.raises(CorruptBlobError, match="truncated or corrupt"):
            decode(b, model, s.size, coder)
    if coder.startswith("zstd"):  # a broken zstd frame is reported as such, not as a ZstdError
        plain = encode(s, model, coder, chunk_size=8192, checksum=False)
        broken = bytearray(plain)
        broken[header : header + 4] = b"\0\0\0\0"  # the first chunk's zstd magic number
        with pytest.raises(CorruptBlobError, match="zstd chunk 0 is corrupt"):
            decode(bytes(broken), None, s.size, coder)
        broken = bytearray(blob)
        broken[header : header + 4] = b"\0\0\0\0"  # with the checksum: caught before decoding
        with pytest.raises(CorruptBlobError, match="crc32 mismatch"):
            decode(bytes(broken), None, s.size, coder)
    np.testing.assert_array_equal(decode(blob, model, s.size, coder), s)
