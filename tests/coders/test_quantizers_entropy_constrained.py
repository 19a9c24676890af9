"""Entropy-constrained quantizer: rate/distortion trade, threshold precision."""

import numpy as np
import pytest

from coders.models import empirical_entropy
from coders.quantizers import (
    EntropyConstrainedQuantizer,
    UniformQuantizer,
    distortion,
)


def test_ecsq_trades_rate_for_distortion(x):
    plain = UniformQuantizer(scale_mult=0.5).quantize(x)
    zero = EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.0).quantize(x)
    np.testing.assert_array_equal(zero.symbols, plain.symbols)
    rates, mses = [], []
    for lam in (0.0, 0.2, 0.6):
        r = EntropyConstrainedQuantizer(scale_mult=0.5, lam=lam).quantize(x)
        assert np.all(np.diff(r.thresholds) >= 0)
        rates.append(empirical_entropy(r.symbols))
        mses.append(distortion(x, r.dequantize()).mse)
    assert rates[0] > rates[1] > rates[2]
    assert mses[0] < mses[1] < mses[2]
    # a dead zone: the zero cell grows
    assert np.mean(EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.6).quantize(x).symbols == 0) > np.mean(
        plain.symbols == 0)


def test_ecsq_threshold_side_bits_match_their_float32_precision(x):
    qz = EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.4).quantize(x)
    t = qz.thresholds
    assert len(t) > 2
    np.testing.assert_array_equal(t, t.astype(np.float32).astype(np.float64))  # float32 values...
    assert qz.edges_side_bits == 32 * (len(t) + 2)  # ...sent in 32 bits each, plus k_lo and the count
    with pytest.raises(ValueError, match="scale_mult"):
        EntropyConstrainedQuantizer(scale_mult=-1.0)
