"""Entropy coders: exact roundtrips, Huffman optimality bounds, bit counts vs constriction."""

import struct

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from coders.entropy import (
    canonical_huffman,
    code_length,
    decode,
    encode,
    huffman_code,
    huffman_lengths,
    pack_bits,
    unpack_bits,
    zstd_raw_bits,
)
from coders.models import ProbabilityModel, empirical_entropy, histogram_model

CODERS = ["ans", "range", "huffman", "zstd-3"]


def laplace_symbols(n, step=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.rint(rng.laplace(size=n) / step).astype(np.int64)


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


@pytest.mark.parametrize("coder", ["ans", "range"])
def test_code_length_equals_constriction_num_bits(coder):
    s = laplace_symbols(50_000, seed=3)
    m = histogram_model(s)
    idx = (s - m.lo).astype(np.int32)
    cat = constriction.stream.model.Categorical(m.probs, perfect=False)
    if coder == "ans":
        enc = constriction.stream.stack.AnsCoder()
        enc.encode_reverse(idx, cat)
    else:
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(idx, cat)
    assert code_length(s, m, coder, include_side=False) == enc.num_bits()
    assert code_length(s, m, coder) == enc.num_bits() + m.side_bits
    # and the blob carries exactly those words
    blob = encode(s, m, coder)
    assert len(blob) == 40 + 16 + 4 * enc.num_words()


def test_code_length_sums_over_chunks():
    s = laplace_symbols(10_000, seed=4)
    m = histogram_model(s)
    per_chunk = sum(code_length(s[a : a + 3000], m, "ans", include_side=False)
                    for a in range(0, s.size, 3000))
    assert code_length(s, m, "ans", include_side=False, chunk_size=3000) == per_chunk


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(2, 60), elements=st.floats(1e-9, 1.0)))
def test_huffman_kraft_and_entropy_bound(w):
    p = w / w.sum()
    code = canonical_huffman(p)
    # a Huffman tree is full: Kraft sum exactly 1
    assert code.kraft_sum() == pytest.approx(1.0, abs=1e-12)
    h = float(-(p * np.log2(p)).sum())
    el = code.expected_length(p)
    assert h - 1e-9 <= el < h + 1 + 1e-9
    # Gallager (1978): redundancy at most p_max + 0.086
    assert el - h <= p.max() + 0.0861
    # canonical: codes are prefix-free (sorted left-justified codes do not overlap)
    L = code.max_len
    left = [int(c) << (L - int(n)) for c, n in zip(code.codes, code.lengths, strict=True)]
    span = [1 << (L - int(n)) for n in code.lengths]
    order = np.argsort(np.array(left, dtype=np.float64), kind="stable")
    ends = [left[i] + span[i] for i in order]
    assert all(ends[a] <= left[order[a + 1]] for a in range(len(order) - 1))


def test_huffman_lengths_match_known_code():
    # dyadic probabilities: Huffman lengths equal -log2 p
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    np.testing.assert_array_equal(huffman_lengths(p), [1, 2, 3, 4, 4])


def test_huffman_length_limit_and_long_codes_roundtrip():
    # geometric table: unlimited Huffman would need 39-bit codes; the limit is 32, and codes over
    # 20 bits take the searchsorted decoding path
    p = np.ldexp(1.0, -np.arange(1, 41))
    m = ProbabilityModel("geom", 0, p, side_bits=0)
    code = huffman_code(m)
    assert code.max_len <= 32 and code.max_len > 20
    assert code.kraft_sum() == pytest.approx(1.0)
    s = np.concatenate([np.arange(39), np.zeros(100, dtype=np.int64), [38, 37, 36]])
    np.testing.assert_array_equal(decode(encode(s, m, "huffman", lane=8), m, s.size, lane=8), s)


def test_huffman_code_length_counts_stream_bits():
    s = laplace_symbols(3000, seed=5)
    m = histogram_model(s)
    code = huffman_code(m)
    bits = code_length(s, m, "huffman", include_side=False, lane=1 << 20)  # one lane, no lane table
    assert bits == int(code.lengths[m.indices(s)].sum())
    blob = encode(s, m, "huffman", lane=1 << 20)
    assert len(blob) - 40 - 16 == -(-bits // 8)


def test_pack_unpack_bits():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 2**63, size=1000, dtype=np.uint64)
    for w in (1, 7, 32, 33, 63, 64):
        vals = v & np.uint64((1 << w) - 1) if w < 64 else v
        data, total = pack_bits(vals, np.full(vals.size, w))
        assert total == w * vals.size and data.size == -(-total // 8)
        np.testing.assert_array_equal(unpack_bits(data.tobytes(), w, vals.size), vals)
    # variable lengths, MSB first: 1 (1 bit), 0b10 (2 bits), 0b1 (3 bits) -> 1 10 001 -> 0b11000100
    data, total = pack_bits(np.array([1, 2, 1], dtype=np.uint64), np.array([1, 2, 3]))
    assert total == 6 and data.tobytes() == bytes([0b11000100])


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


def test_zstd_raw_baseline_sizes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000).astype(np.float32)
    b32 = zstd_raw_bits(x, "float32")
    b16 = zstd_raw_bits(x, "bf16")
    # random mantissas barely compress: most of 32 (16) bits per entry remain
    assert 24 * x.size < b32 <= 33 * x.size
    assert 10 * x.size < b16 <= 17 * x.size
    assert zstd_raw_bits(np.zeros(10_000, np.float32)) < 1000
    with pytest.raises(ValueError, match="dtype"):
        zstd_raw_bits(x, "int8")


def test_header_layout_is_documented_size():
    s = laplace_symbols(10)
    m = histogram_model(s)
    blob = encode(s, m, "ans")
    magic, cid = struct.unpack_from("<4sB", blob, 0)
    assert magic == b"GSC1" and cid == 1


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
        with pytest.raises(ValueError, match="truncated or corrupt"):
            decode(b, model, s.size, coder)
    if coder.startswith("zstd"):  # a broken zstd frame is reported as such, not as a ZstdError
        broken = bytearray(blob)
        broken[header : header + 4] = b"\0\0\0\0"  # the first chunk's zstd magic number
        with pytest.raises(ValueError, match="zstd chunk 0 is corrupt"):
            decode(bytes(broken), None, s.size, coder)
    np.testing.assert_array_equal(decode(blob, model, s.size, coder), s)
