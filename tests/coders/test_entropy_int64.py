"""Escapes at the int64 edges (issue 15 item 5): every coder x model kind is lossless on any int64
input, and `code_length` is the blob less its framing and byte padding, bit for bit."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coders.entropy import code_length, decode, encode, framing_bits, huffman_code
from coders.models import (
    ProbabilityModel,
    elias_gamma_bits,
    escape_section_bits,
    escape_width,
    family_model,
    histogram_model,
    range_header_bits,
)
from coders.quantizers import UniformQuantizer
from gradstats.families import Normal

I64MIN, I64MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
MODEL_CODERS = ["ans", "range", "huffman"]


def padding_bits(s, m, coder):
    """The byte padding of a one-chunk blob: payload (ANS / range: whole words, none; Huffman in
    one lane: the stream) and escape section, each to whole bytes."""
    esc = s[m.indices(s) == m.escape]
    esc_bits = escape_section_bits(esc)
    payload = code_length(s, m, coder, include_side=False) - esc_bits
    return (0 if coder != "huffman" else -payload % 8) + (-esc_bits % 8)


def check_exact(s, m, coder):
    s = np.asarray(s, dtype=np.int64)
    blob = encode(s, m, coder)
    np.testing.assert_array_equal(decode(blob, m, s.size, coder), s)
    counted = code_length(s, m, coder, include_side=False)
    assert 8 * len(blob) == framing_bits(blob) + counted + padding_bits(s, m, coder)
    assert code_length(s, m, coder) == counted + m.side_bits


@pytest.mark.parametrize("coder", MODEL_CODERS)
@pytest.mark.parametrize("s", [[I64MAX, I64MAX, 0], [I64MIN, 0, I64MIN], [I64MIN, I64MAX, I64MIN, I64MAX],
                               [I64MAX], [I64MIN]])
def test_issue15_edges_with_the_default_histogram_model(coder, s):
    check_exact(s, histogram_model(np.array(s, dtype=np.int64)), coder)


@pytest.mark.parametrize("coder", MODEL_CODERS)
def test_issue15_model_at_the_top_edge(coder):
    # lo = INT64_MAX - 2 with 5 table entries: entries past INT64_MAX belong to no symbol
    m = ProbabilityModel("edge", I64MAX - 2, np.ones(6), 0)
    assert m.hi == I64MAX
    s = np.array([I64MAX, I64MAX - 2, 0, I64MAX - 1, I64MIN, -1], dtype=np.int64)
    np.testing.assert_array_equal(m.indices(s), [2, 0, 5, 1, 5, 5])
    check_exact(s, m, coder)
    # 3 escapes (0, INT64_MIN, -1) at width 64: 8 + 3 * 64 bits counted for them
    inside = s[[0, 1, 3]]
    esc = code_length(s, m, coder, include_side=False) - code_length(inside, m, coder, include_side=False)
    if coder == "huffman":
        assert esc == 8 + 3 * 64 + 3 * int(huffman_code(m).lengths[m.escape])
    m_low = ProbabilityModel("edge", I64MIN, np.ones(4), 0)
    check_exact(np.array([I64MIN, I64MIN + 2, I64MAX, 0], dtype=np.int64), m_low, coder)


def test_model_lo_outside_int64_is_rejected():
    with pytest.raises(ValueError, match="lo must be an int64"):
        ProbabilityModel("x", I64MAX + 1, np.ones(3), 0)


def test_side_information_is_exact_past_2_53():
    v = np.array([1, 2, 3, 2**53 - 1, 2**53, 2**60 - 1, 2**60, I64MAX], dtype=np.int64)
    expect = [2 * int(x).bit_length() - 1 for x in v]
    np.testing.assert_array_equal(elias_gamma_bits(v), expect)
    # zigzag(INT64_MIN) + 1 = 2^64: 129 bits; zigzag(INT64_MAX) + 1 = 2^64 - 1: 127 bits
    assert range_header_bits(I64MIN, 1) == 129 + 1
    assert range_header_bits(I64MAX, 1) == 127 + 1
    assert range_header_bits(0, 3) == 1 + 3
    assert escape_width(np.array([I64MIN])) == 64 and escape_width(np.array([I64MAX])) == 64


int64s = st.integers(I64MIN, I64MAX)
edges = st.sampled_from([I64MIN, I64MIN + 1, -1, 0, 1, I64MAX - 1, I64MAX])
symbols = st.lists(st.one_of(int64s, edges, st.integers(-4, 4)), min_size=1, max_size=60)


def model_of(kind, s, lo):
    if kind == "histogram":
        return histogram_model(s)
    if kind == "histogram-other":  # fitted on other data: most symbols escape
        return histogram_model(np.arange(-3, 4))
    if kind == "table":  # a table anywhere in int64, the edges included
        return ProbabilityModel("table", lo, np.arange(1.0, 9.0), 0)
    q = UniformQuantizer(step=1.0).quantize(np.linspace(-3, 3, 50))  # a family over uniform cells
    return family_model(Normal(loc=0.0, scale=1.5), q)


@pytest.mark.parametrize("coder", MODEL_CODERS)
@pytest.mark.parametrize("kind", ["histogram", "histogram-other", "table", "family"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=symbols, lo=st.one_of(edges, int64s))
def test_lossless_and_exact_length_over_all_int64(coder, kind, s, lo):
    s = np.array(s, dtype=np.int64)
    check_exact(s, model_of(kind, s, min(lo, I64MAX)), coder)


@settings(max_examples=60, deadline=None)
@given(s=symbols)
def test_zstd_lossless_over_all_int64(s):
    s = np.array(s, dtype=np.int64)
    blob = encode(s, None, "zstd-3")
    np.testing.assert_array_equal(decode(blob, None, s.size, "zstd-3"), s)
    assert 8 * len(blob) == framing_bits(blob) + code_length(s, None, "zstd-3")
