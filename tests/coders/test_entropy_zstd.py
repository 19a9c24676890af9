"""zstd baselines."""

import numpy as np
import pytest

from coders.entropy import (
    zstd_raw_bits,
)

CODERS = ["ans", "range", "huffman", "zstd-3"]


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
