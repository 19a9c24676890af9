"""ProbabilityModel: floors and normalization."""

import numpy as np
import pytest
import scipy.stats

from coders.models import (
    PROB_FLOOR,
    ProbabilityModel,
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


def test_probability_model_floors_and_normalizes():
    m = ProbabilityModel("t", 0, np.array([3.0, 0.0, 1.0, 0.0]), side_bits=0)
    assert m.probs.sum() == pytest.approx(1.0) and m.probs.min() >= PROB_FLOOR * (1 - 1e-12)
    assert m.probs[0] == pytest.approx(0.75, rel=1e-6)
    np.testing.assert_array_equal(m.indices(np.array([-1, 0, 2, 3, 99])), [3, 0, 2, 3, 3])
