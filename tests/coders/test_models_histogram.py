"""The histogram model and the plug-in entropy."""

import math

import numpy as np
import pytest
import scipy.stats

from coders.models import (
    PROB_FLOOR,
    empirical_entropy,
    histogram_model,
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


def test_histogram_model_counts_and_side_bits():
    s = np.array([0, 0, 0, 1, 3, 3, -1])
    m = histogram_model(s)
    assert (m.lo, m.hi, m.table_size) == (-1, 3, 6)
    counts = np.array([1, 3, 1, 0, 2, 0])  # symbols -1..3, then escape
    # range: gamma(zigzag(-1) + 1 = 2) = 3 bits, gamma(6) = 5 bits; then gamma(count + 1) per entry
    assert m.side_bits == 3 + 5 + int(sum(2 * math.floor(math.log2(c + 1)) + 1 for c in counts))
    np.testing.assert_allclose(m.probs[[0, 1, 2, 4]], counts[[0, 1, 2, 4]] / 7, rtol=1e-6)
    assert m.probs.min() >= PROB_FLOOR * (1 - 1e-9) and m.probs.sum() == pytest.approx(1.0)
    # the oracle model's cross-entropy is the empirical entropy (up to the floors)
    assert m.cross_entropy(s) == pytest.approx(empirical_entropy(s), abs=1e-5)


def test_empirical_entropy_closed_form():
    assert empirical_entropy(np.array([5, 5, 7, 7])) == pytest.approx(1.0)
    assert empirical_entropy(np.arange(8)) == pytest.approx(3.0)
    assert empirical_entropy(np.array([4] * 10)) == 0.0
    assert empirical_entropy(np.array([-(2**62), 2**62])) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [0, 1, 4095, 4097, 3 * 4096 + 17, 70_000])
def test_histogram_counted_from_its_lanes_is_the_same(n):
    from coders.models import SymbolHistogram

    s = np.random.default_rng(n).integers(-40, 25, n)
    plain, laned = SymbolHistogram(s), SymbolHistogram(s, lanes=(16_384, 4096))
    assert (plain.lo, plain.hi, plain.n) == (laned.lo, laned.hi, laned.n)
    if n:
        np.testing.assert_array_equal(plain.counts, laned.counts)
        np.testing.assert_array_equal(plain.lane_counts(16_384, 4096), laned.lane_counts(16_384, 4096))
    else:
        assert plain.counts is None and laned.counts is None
    wide = np.array([0, 1 << 40])  # too wide an alphabet: no counts either way
    assert SymbolHistogram(wide, lanes=(16_384, 4096)).counts is None
