"""ANS and range coders: bit counts are constriction's own."""

import constriction
import numpy as np
import pytest

from coders.entropy import (
    code_length,
    encode,
)
from coders.models import histogram_model


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
