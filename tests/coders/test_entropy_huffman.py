"""Canonical Huffman: Kraft equality, entropy bound, length limit, stream bit counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from coders.entropy import (
    canonical_huffman,
    code_length,
    decode,
    encode,
    huffman_code,
    huffman_lengths,
)
from coders.models import ProbabilityModel, histogram_model


def laplace_symbols(n, step=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.rint(rng.laplace(size=n) / step).astype(np.int64)


CODERS = ["ans", "range", "huffman", "zstd-3"]


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
