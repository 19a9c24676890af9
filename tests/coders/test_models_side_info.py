"""Side information: Elias-gamma lengths, zigzag."""

import numpy as np
import pytest
import scipy.stats

from coders.models import (
    elias_gamma_bits,
    unzigzag,
    zigzag,
)
from coders.quantizers import EntropyConstrainedQuantizer, LloydMaxQuantizer, UniformQuantizer

gradstats_families = pytest.importorskip("gradstats.families")


QUANTIZERS = [
    UniformQuantizer(scale_mult=0.5),
    UniformQuantizer(levels=9, clip_quantile=0.98),
    UniformQuantizer(scale_mult=1.0, block_size=16, stochastic=True),
    LloydMaxQuantizer(8, family=scipy.stats.laplace()),
    EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.3),
]


MODELS = ["histogram", "normal", "laplace", "gennorm", "zi-gennorm", "mismatched"]


def test_elias_gamma_lengths():
    np.testing.assert_array_equal(elias_gamma_bits([1, 2, 3, 4, 7, 8, 2**20]), [1, 3, 3, 5, 5, 7, 41])
    with pytest.raises(ValueError, match=">= 1"):
        elias_gamma_bits([0])


def test_zigzag_roundtrip_extremes():
    v = np.array([0, -1, 1, -2, 2**63 - 1, -(2**63)], dtype=np.int64)
    np.testing.assert_array_equal(zigzag(v)[:4], [0, 1, 2, 3])
    np.testing.assert_array_equal(unzigzag(zigzag(v)), v)
