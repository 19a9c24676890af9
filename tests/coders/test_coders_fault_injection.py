"""Corrupt blobs (issue 15 item 6): 2,000+ random bit flips and truncations across the coders give
`CorruptBlobError` or the right symbols, never another exception; with the blob's crc32 (the
default) every corruption is caught."""

import numpy as np
import pytest

from coders.entropy import CorruptBlobError, decode, encode
from coders.models import histogram_model

CODERS = ["ans", "range", "huffman", "zstd-3"]


def symbols():
    rng = np.random.default_rng(1)
    s = np.rint(rng.laplace(size=5000) / 0.3).astype(np.int64)
    s[5], s[77], s[4000] = 10**12, -(2**63), 2**63 - 1  # an escape section at width 64
    return s


def corrupt(blob: bytes, rng: np.random.Generator) -> bytes:
    """One of: a bit flip, 2-4 bit flips, a truncation, a byte run overwritten, bytes appended."""
    b = bytearray(blob)
    kind = int(rng.integers(5))
    if kind in (0, 1):
        for _ in range(1 if kind == 0 else int(rng.integers(2, 5))):
            i = int(rng.integers(len(b) * 8))
            b[i // 8] ^= 1 << (i % 8)
        return bytes(b)
    if kind == 2:
        return bytes(b[: int(rng.integers(len(b)))])
    if kind == 3:
        i = int(rng.integers(len(b)))
        b[i : i + 8] = rng.integers(0, 256, len(b[i : i + 8]), dtype=np.uint8).tobytes()
        return bytes(b) if bytes(b) != blob else bytes(b[:-1])
    return bytes(b) + rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("coder", CODERS)
def test_fuzzed_blobs_raise_corrupt_blob_error_or_decode_right(coder, checksum):
    s = symbols()
    model = None if coder.startswith("zstd") else histogram_model(s[:2500])
    blob = encode(s, model, coder, chunk_size=2048, lane=512, checksum=checksum)
    rng = np.random.default_rng(hash((coder, checksum)) % 2**32)
    outcomes = {"caught": 0, "right": 0, "wrong": 0}
    for _ in range(300):  # 8 x 300 = 2,400 corrupted blobs
        bad = corrupt(blob, rng)
        try:
            out = decode(bad, model, s.size, coder, lane=512)
        except CorruptBlobError:
            outcomes["caught"] += 1
            continue
        assert out.dtype == np.int64 and out.shape == s.shape
        outcomes["right" if np.array_equal(out, s) else "wrong"] += 1
    if checksum:  # crc32 catches every burst of <= 32 bits, truncations and appended bytes
        assert outcomes["wrong"] == 0 and outcomes["caught"] == 300
    else:  # without it flips inside a payload may decode to other symbols, but never crash
        assert outcomes["caught"] > 100


@pytest.mark.parametrize("coder", CODERS)
def test_every_single_bit_flip_of_a_small_blob_is_caught(coder):
    s = symbols()[:300]
    model = None if coder.startswith("zstd") else histogram_model(s)
    blob = encode(s, model, coder)
    for i in range(8 * len(blob)):
        b = bytearray(blob)
        b[i // 8] ^= 1 << (i % 8)
        with pytest.raises(CorruptBlobError):
            decode(bytes(b), model, s.size, coder)


def test_wrong_arguments_are_corrupt_blob_errors_that_name_the_mismatch():
    s = symbols()[:100]
    m = histogram_model(s)
    blob = encode(s, m, "ans")
    with pytest.raises(CorruptBlobError, match="holds 100 symbols, not 99"):
        decode(blob, m, 99)
    with pytest.raises(CorruptBlobError, match="written by 'ans', not 'range'"):
        decode(blob, m, coder="range")
    with pytest.raises(CorruptBlobError, match="model differs"):
        decode(blob, histogram_model(s[:50]))
    with pytest.raises(CorruptBlobError, match="a blob is bytes"):
        decode(np.zeros(3), m)
    with pytest.raises(CorruptBlobError, match="magic"):
        decode(b"PK\x03\x04" + blob[4:], m)
    assert issubclass(CorruptBlobError, ValueError)
