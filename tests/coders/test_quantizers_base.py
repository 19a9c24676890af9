"""Every quantizer: symbols lie in their cells, degenerate inputs, bad arguments, distortion."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from coders.quantizers import (
    EntropyConstrainedQuantizer,
    LloydMaxQuantizer,
    UniformQuantizer,
    distortion,
)


@pytest.mark.parametrize("q", [UniformQuantizer(step=4e-4), UniformQuantizer(levels=9, clip_quantile=0.95),
                               UniformQuantizer(scale_mult=0.7, block_size=128),
                               LloydMaxQuantizer(6, family=scipy.stats.laplace(scale=1e-3)),
                               EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.4)],
                         ids=lambda q: q.name)
def test_symbols_lie_in_their_cells(x, q):
    r = q.quantize(x)
    lo, hi = int(r.symbols.min()), int(r.symbols.max())
    e = r.edges(lo, hi)
    u = q.normalize(x)
    k = r.symbols - lo
    # x is inside [e_k, e_{k+1}] (boundaries may go either way up to float rounding)
    tol = 1e-6 * (np.abs(u) + 1e-12)
    assert np.all(u >= e[k] - tol) and np.all(u <= e[k + 1] + tol)


def test_degenerate_inputs():
    for blocked in (UniformQuantizer(scale_mult=0.5, block_size=128),
                    UniformQuantizer(levels=5, block_size=4)):
        for empty in (np.zeros(0, np.float32), torch.zeros(0)):
            r = blocked.quantize(empty)
            assert r.symbols.size == 0 and r.side_bits == 32
        r = blocked.quantize(torch.zeros(300))
        assert np.all(r.symbols == 0) and np.all(r.cells.scales == 1.0)
    q = UniformQuantizer(scale_mult=0.5)
    r = q.quantize(np.zeros(0, np.float32))
    assert r.symbols.size == 0 and q.dequantize(r).shape == (0,)
    z = np.zeros((3, 4), np.float32)
    r = q.quantize(z)
    assert np.all(r.symbols == 0) and np.array_equal(q.dequantize(r), z)
    # float64 values below float32 range (issue 15 item 1): quantized as x / 2^E, E sent in 16 bits
    tiny = UniformQuantizer(scale_mult=1.0, block_size=4).quantize(np.full(10, 3e-230))
    assert np.all(tiny.symbols == 1) and tiny.exponent == np.frexp(3e-230)[1]
    assert tiny.side_bits == 32 + 16 * 3 + 16
    back = tiny.dequantize()
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, 3e-230, rtol=2**-7)  # the bf16 block scale
    c = np.full(100, 2.5)
    r = q.quantize(c)
    assert np.unique(r.symbols).size == 1
    for bad in (np.array([1.0, np.nan]), np.array([np.inf, 0.0]), torch.tensor([0.0, float("nan")])):
        with pytest.raises(ValueError, match="NaN or Inf"):
            q.quantize(bad)
    with pytest.raises(ValueError, match="one distinct value"):
        LloydMaxQuantizer(4, family="gennorm").quantize(c)
    with pytest.raises(ValueError, match="empty"):
        LloydMaxQuantizer(4).quantize(np.zeros(0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        UniformQuantizer()
    with pytest.raises(ValueError, match="exactly one"):
        UniformQuantizer(step=1.0, levels=5)
    with pytest.raises(ValueError, match="step"):
        UniformQuantizer(step=-1.0)
    with pytest.raises(ValueError, match="levels"):
        UniformQuantizer(levels=2)
    with pytest.raises(ValueError, match="clip_quantile"):
        UniformQuantizer(levels=5, clip_quantile=0.0)
    with pytest.raises(ValueError, match="lam"):
        EntropyConstrainedQuantizer(step=1.0, lam=-1)
    with pytest.raises(ValueError, match="real-valued"):
        UniformQuantizer(step=1.0).quantize(np.array(["a"]))


def test_distortion_snr():
    x = np.array([3.0, 4.0])
    d = distortion(x, np.array([3.0, 3.0]))
    assert d.mse == 0.5 and d.snr_db == pytest.approx(10 * math.log10(25 / 1))
    assert distortion(x, x).snr_db == math.inf
    with pytest.raises(ValueError, match="shapes"):
        distortion(x, x[:1])
