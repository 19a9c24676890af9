"""ANS and range coders: bit counts are constriction's own."""

import constriction
import numpy as np
import pytest

from coders.entropy import code_length, coded_cross_entropy, encode
from coders.models import ProbabilityModel, histogram_model


def laplace_symbols(n, step=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.rint(rng.laplace(size=n) / step).astype(np.int64)


CODERS = ["ans", "range", "huffman", "zstd-3"]


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


@pytest.mark.parametrize("coder", ["ans", "range"])
@pytest.mark.parametrize("shape", [0.3, 1.0, 2.0])
def test_payload_meets_the_coded_cross_entropy_even_under_a_bad_model(coder, shape):
    # a table whose tail sits near the 2^-24 floor, and data that lands there often: the float
    # table's cross-entropy is then far from what the 24-bit coder pays, the coded one is not
    k = 400
    p = np.exp(-3 * np.abs(np.arange(k) - k // 2) ** shape)
    m = ProbabilityModel("bad", -k // 2, np.append(p, 0.0), 0)
    rng = np.random.default_rng(1)
    s = rng.choice(k, 100_000, p=m.probs[:-1] / m.probs[:-1].sum()) + m.lo
    s[:20_000] = rng.integers(m.lo, m.lo + k, 20_000)
    s[:5] = 10**7  # escapes
    bits = code_length(s, m, coder, include_side=False)
    ce = coded_cross_entropy(s, m, coder) * s.size
    assert 0 <= bits - ce < 64  # whole 32-bit words plus the final state
