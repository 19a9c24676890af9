"""Coding a symbol stream: exact roundtrips for any input, escapes, chunking, errors."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from coders.entropy import (
    code_length,
    decode,
    encode,
)
from coders.models import ProbabilityModel, empirical_entropy, histogram_model


def laplace_symbols(n, step=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.rint(rng.laplace(size=n) / step).astype(np.int64)


CODERS = ["ans", "range", "huffman", "zstd-3"]


@pytest.mark.parametrize("coder", CODERS + ["zstd-19"])
def test_roundtrip_and_rate_near_entropy(coder):
    s = laplace_symbols(200_003)
    m = histogram_model(s)
    blob = encode(s, m, coder)
    np.testing.assert_array_equal(decode(blob, m, s.size, coder), s)
    h = empirical_entropy(s)
    bits = code_length(s, m, coder, include_side=False)
    if coder in ("ans", "range"):
        assert h <= bits / s.size <= h * 1.001 + 64 / s.size
    elif coder == "huffman":
        assert h <= bits / s.size < h + 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=arrays(np.int64, st.integers(0, 300),
                elements=st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1))),
    train_seed=st.integers(0, 10),
    coder=st.sampled_from(CODERS),
)
def test_roundtrip_any_input_under_a_mismatched_model(data, train_seed, coder):
    # the model is trained on other data, so wild values must go through the escape
    m = histogram_model(laplace_symbols(500, step=1.0, seed=train_seed))
    blob = encode(data, m, coder, chunk_size=97, lane=16)
    np.testing.assert_array_equal(decode(blob, m, data.size, coder, lane=16), data)


@pytest.mark.parametrize("coder", ["ans", "range", "huffman"])
def test_escape_widths_up_to_64_bits(coder):
    m = histogram_model(np.array([0, 0, 1, -1]))
    s = np.array([0, 5, -(2**63), 2**63 - 1, 2**40, -7, 1, 2**31, -(2**31) - 1], dtype=np.int64)
    np.testing.assert_array_equal(decode(encode(s, m, coder), m, s.size, coder), s)
    # payload + 8-bit width + 64 bits per escape (width set by the widest value)
    n_esc = int(np.sum((s < -1) | (s > 1)))
    assert code_length(s, m, coder, include_side=False) >= 8 + 64 * n_esc


def test_code_length_sums_over_chunks():
    s = laplace_symbols(10_000, seed=4)
    m = histogram_model(s)
    per_chunk = sum(code_length(s[a : a + 3000], m, "ans", include_side=False)
                    for a in range(0, s.size, 3000))
    assert code_length(s, m, "ans", include_side=False, chunk_size=3000) == per_chunk


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("s", [np.zeros(0, dtype=np.int64), np.zeros(1000, dtype=np.int64),
                               np.full(10, -5, dtype=np.int64), np.array([2**62])])
def test_degenerate_inputs_roundtrip(coder, s):
    m = histogram_model(s)
    np.testing.assert_array_equal(decode(encode(s, m, coder), m, s.size, coder), s)
    if s.size and coder in ("ans", "huffman"):
        # one distinct value: the oracle model costs (almost) nothing per entry beyond its side info
        assert code_length(s, m, coder, include_side=False) <= s.size + 64


def test_bad_inputs_raise_clear_errors():
    s = laplace_symbols(100)
    m = histogram_model(s)
    with pytest.raises(ValueError, match="integer"):
        encode(s.astype(np.float64), m, "ans")
    with pytest.raises(ValueError, match="unknown coder"):
        encode(s, m, "lzma")
    with pytest.raises(ValueError, match="ProbabilityModel"):
        encode(s, None, "ans")
    blob = encode(s, m, "ans")
    with pytest.raises(ValueError, match="model differs"):
        decode(blob, histogram_model(s[:50]), s.size)
    with pytest.raises(ValueError, match="100 symbols"):
        decode(blob, m, 99)
    with pytest.raises(ValueError, match="written by"):
        decode(blob, m, coder="huffman")
    with pytest.raises(ValueError, match="magic"):
        decode(b"x" * 100, m)
    with pytest.raises(ValueError, match="finite"):
        ProbabilityModel("bad", 0, np.array([0.5, np.nan]), 0)
    with pytest.raises(ValueError, match="exceeds"):
        ProbabilityModel("big", 0, np.ones((1 << 22) + 2), 0)


def test_huge_alphabet_is_escaped_not_refused():
    rng = np.random.default_rng(1)
    s = rng.integers(-(10**9), 10**9, size=5000)
    m = histogram_model(s, max_table=1024)
    assert m.table_size == 1025
    for coder in ("ans", "huffman"):
        np.testing.assert_array_equal(decode(encode(s, m, coder), m, s.size), s)


def test_code_length_builds_the_empirical_model():
    s = laplace_symbols(20_000, seed=7)
    m = histogram_model(s)
    assert code_length(s) == code_length(s, m, "ans")
    assert code_length(s, "histogram", "huffman", include_side=False) == code_length(
        s, m, "huffman", include_side=False)


@pytest.mark.parametrize("coder", ["ans", "range", "huffman"])
def test_decode_prefix_is_the_start_of_a_chunk_of_the_full_decode(coder):
    from coders.entropy import decode_prefix
    from coders.entropy.container import CorruptBlobError

    s = laplace_symbols(50_000, step=0.2, seed=4)
    m = histogram_model(s[:20_000])  # a table that lets some symbols escape
    blob = encode(s, m, coder, chunk_size=16_384)
    idx = m.indices(decode(blob, m, s.size, coder))
    assert (idx == m.escape).any()
    for chunk, count in ((0, 1000), (1, 16_384), (3, 50_000 - 3 * 16_384), (2, 0)):
        a = chunk * 16_384
        np.testing.assert_array_equal(decode_prefix(blob, m, chunk, count, s.size, coder), idx[a : a + count])
    with pytest.raises(ValueError, match="outside the blob"):
        decode_prefix(blob, m, 4, 1)
    with pytest.raises(ValueError, match="outside the blob"):
        decode_prefix(blob, m, 3, 50_000 - 3 * 16_384 + 1)
    flipped = bytearray(blob)
    flipped[-5] ^= 1
    with pytest.raises(CorruptBlobError):
        decode_prefix(bytes(flipped), m, 0, 10)
    with pytest.raises(CorruptBlobError, match="model differs"):
        decode_prefix(blob, histogram_model(s), 0, 10)


def test_huffman_window_size_is_what_the_window_codes_to():
    """The lanes of a window, coded as one chunk, have the bits and bytes computed from the lane
    histograms (the check `verify="sample"` makes), for windows inside any chunk."""
    from coders.entropy import HUFFMAN_LANE, huffman_size, huffman_window_size, make_coder, sample_window
    from coders.models import SymbolHistogram

    s = laplace_symbols(3 * 16_384 + 5_000, step=0.25, seed=6)
    m = histogram_model(s[:30_000])
    h = SymbolHistogram(s)
    coder = make_coder("huffman")
    idx = m.indices(s)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        start, stop, chunk, lane0 = sample_window(s.size, 2 * HUFFMAN_LANE, rng, chunk_size=16_384)
        assert start == chunk * 16_384 + lane0 * HUFFMAN_LANE and 0 < stop - start <= 2 * HUFFMAN_LANE
        assert stop <= min((chunk + 1) * 16_384, s.size)
        seen.add(chunk)
        lanes = -(-(stop - start) // HUFFMAN_LANE)
        data, bits = coder.encode_chunk_counted(idx[start:stop], m)
        assert huffman_window_size(h, m, chunk, lane0, lanes, chunk_size=16_384) == (bits, len(data))
        np.testing.assert_array_equal(coder.decode_chunk(data, m, stop - start), idx[start:stop])
    assert seen == {0, 1, 2, 3}
    # a window of the whole stream is the whole stream's size (one chunk)
    whole = huffman_window_size(h, m, 0, 0, -(-s.size // HUFFMAN_LANE), chunk_size=s.size)
    bits, _ = huffman_size(h, m, chunk_size=s.size)
    assert whole[0] == bits - h.escape_bits(m)
    assert sample_window(100, 4096, rng) == (0, 100, 0, 0)
