"""Lloyd-Max: Max (1960) table, MSE vs uniform."""

import numpy as np
import pytest
import scipy.stats

from coders.quantizers import (
    LloydMaxQuantizer,
    UniformQuantizer,
    distortion,
    lloyd_max_levels,
)


def test_lloyd_max_matches_max_1960_normal_table():
    # Max (1960), Table I, N = 4: outputs +-0.4528, +-1.510; thresholds 0, +-0.9816; MSE 0.1175
    r, t = lloyd_max_levels(scipy.stats.norm(), 4)
    np.testing.assert_allclose(r, [-1.510, -0.4528, 0.4528, 1.510], atol=2e-3)
    np.testing.assert_allclose(t, [-0.9816, 0.0, 0.9816], atol=2e-3)
    rng = np.random.default_rng(1)
    v = rng.standard_normal(200_000)
    q = LloydMaxQuantizer(4, family=scipy.stats.norm())
    assert distortion(v, q.dequantize(q.quantize(v))).mse == pytest.approx(0.1175, rel=0.02)


def test_lloyd_max_beats_uniform_at_equal_levels(x):
    lm = LloydMaxQuantizer(8, family=scipy.stats.laplace(scale=float(np.mean(np.abs(x)))))
    r = lm.quantize(x)
    assert r.symbols.min() >= -4 and r.symbols.max() <= 3 and r.side_bits == 8 * 32
    uniform = [UniformQuantizer(levels=8, clip_quantile=qq).quantize(x) for qq in (0.9, 0.95, 0.99, 0.999)]
    best_uniform = max(distortion(x, u.dequantize()).snr_db for u in uniform)
    assert distortion(x, r.dequantize()).snr_db > best_uniform
