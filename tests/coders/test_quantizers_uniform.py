"""Uniform quantizer: mid-tread rounding, steps, clipping, stochastic rounding, blocks, torch."""

import math

import numpy as np
import pytest
import torch

from coders.quantizers import (
    EntropyConstrainedQuantizer,
    UniformQuantizer,
    distortion,
    round_bf16,
)


def test_uniform_step_is_mid_tread_rounding(x):
    q = UniformQuantizer(step=5e-4)
    r = q.quantize(x)
    np.testing.assert_array_equal(r.symbols, np.rint(x * (1 / 5e-4)).astype(np.int64))
    xhat = q.dequantize(r)
    assert xhat.shape == x.shape and xhat.dtype == np.float32
    assert np.max(np.abs(xhat - x)) <= 0.5 * 5e-4 * (1 + 1e-5)
    assert r.side_bits == 32
    # zero is a reconstruction level (mid-tread): tiny inputs map to exactly 0
    assert q.dequantize(q.quantize(np.array([1e-9, -1e-9], np.float32))).tolist() == [0.0, 0.0]


def test_uniform_step_from_scale(x):
    r = UniformQuantizer(scale_mult=0.25).quantize(x)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert r.step == pytest.approx(0.25 * rms, rel=1e-6)
    d = distortion(x, r.dequantize())
    assert r.distortion(x) == d
    # fine uniform quantization: MSE ~ step^2 / 12
    assert d.mse == pytest.approx(r.step**2 / 12, rel=0.05)


def test_uniform_step_from_fitted_family_scale(x):
    fam = pytest.importorskip("gradstats.families")
    r = UniformQuantizer(scale_mult=0.5, family=fam.Laplace(0.0, 2e-3)).quantize(x)
    assert r.step == pytest.approx(1e-3, rel=1e-6)
    fitted = UniformQuantizer(scale_mult=0.5, family="laplace").quantize(x)
    assert fitted.step == pytest.approx(0.5 * np.mean(np.abs(x - np.median(x))), rel=1e-3)  # Laplace MLE
    with pytest.raises(ValueError, match="per layer"):
        UniformQuantizer(scale_mult=0.5, family="laplace", block_size=128)


def test_uniform_levels_clip_at_quantile(x):
    q = UniformQuantizer(levels=15, clip_quantile=0.99)
    r = q.quantize(x)
    assert r.symbols.min() == -7 and r.symbols.max() == 7
    assert r.bounds == (-7, 7)
    assert 7 * r.step == pytest.approx(np.quantile(np.abs(x), 0.99), rel=1e-6)
    # entries beyond the clip value (a fraction 1 - q) land on the end levels
    assert np.mean(np.abs(x) > 7 * r.step) == pytest.approx(0.01, abs=1e-3)
    assert np.mean(np.abs(r.symbols) == 7) == pytest.approx(np.mean(np.abs(x / np.float32(r.step)) > 6.5),
                                                            abs=1e-3)
    r16 = UniformQuantizer(levels=16).quantize(x)
    assert (r16.symbols.min(), r16.symbols.max()) == (-8, 7)


def test_stochastic_rounding_is_unbiased():
    v = np.full(200_000, 0.37, dtype=np.float64)
    q = UniformQuantizer(step=1.0, stochastic=True, seed=3)
    r = q.quantize(v)
    assert set(np.unique(r.symbols).tolist()) == {0, 1}
    # E[k] = 0.37; std of the mean = sqrt(0.37 * 0.63 / n)
    assert abs(r.symbols.mean() - 0.37) < 5 * math.sqrt(0.37 * 0.63 / v.size)
    # a second call draws new noise
    assert not np.array_equal(q.quantize(v).symbols, r.symbols)


def test_per_block_scaling(x):
    y = x.copy()
    y[:4096] *= 100.0  # one loud block
    q = UniformQuantizer(scale_mult=0.5, block_size=4096)
    r = q.quantize(y)
    nb = math.ceil(y.size / 4096)
    assert r.cells.scales.shape == (nb,) and r.side_bits == 32 + 16 * nb
    np.testing.assert_array_equal(round_bf16(r.cells.scales), r.cells.scales)  # scales are bf16 values
    err = np.abs(q.dequantize(r) - y)
    bound = 0.5 * r.step * np.repeat(r.cells.scales, 4096)[: y.size] * (1 + 1e-3)
    assert np.all(err <= bound)
    # per-layer scaling with the same c wastes the loud block's range on the quiet ones
    per_layer = UniformQuantizer(scale_mult=0.5).quantize(y)
    assert distortion(y[4096:], per_layer.dequantize()[4096:]).snr_db < distortion(
        y[4096:], r.dequantize()[4096:]).snr_db - 10


def test_torch_path_matches_numpy(x):
    for q in (UniformQuantizer(step=3e-4), UniformQuantizer(scale_mult=0.5, block_size=128),
              UniformQuantizer(levels=9, clip_quantile=0.95),
              UniformQuantizer(levels=5, clip_quantile=0.99991)):
        a, b = q.quantize(x), q.quantize(torch.from_numpy(x))
        assert a.step == b.step
        np.testing.assert_array_equal(a.symbols, b.symbols)
        out = q.dequantize(b)
        assert isinstance(out, torch.Tensor) and out.device == torch.device("cpu")
        np.testing.assert_allclose(out.numpy(), q.dequantize(a), rtol=1e-6)


def test_step_from_scale_is_float64_exact_and_scale_invariant(x):
    # the step is computed in float64 whatever the input dtype: a float32 array, its float64 copy and
    # a torch tensor give one step (a float32 BLAS dot made it depend on the CPU's kernel)
    q = UniformQuantizer(scale_mult=0.5)
    exact = 0.5 * math.sqrt(math.fsum(v * v for v in x.astype(np.float64).tolist()) / x.size)
    steps = {q.quantize(x).step, q.quantize(x.astype(np.float64)).step, q.quantize(torch.from_numpy(x)).step}
    assert steps == {float(np.float32(exact))}
    # scale invariance over the float range: scaling by a power of two scales the step and keeps symbols
    base = q.quantize(x.astype(np.float64)).symbols
    for p2 in (-100, -60, 60, 100):
        y = x.astype(np.float32) * np.float32(2.0**p2)
        r = q.quantize(y)
        np.testing.assert_array_equal(r.symbols, base)
    for p2 in (-100, 100):
        r = q.quantize(torch.from_numpy(x.astype(np.float64) * 2.0**p2))
        np.testing.assert_array_equal(r.symbols, base)


@pytest.mark.cuda
def test_cuda_input_stays_on_device(x):
    xt = torch.from_numpy(x).cuda()
    q = UniformQuantizer(scale_mult=0.5, stochastic=True)
    r = q.quantize(xt)
    assert q.dequantize(r).device.type == "cuda"
    assert np.all(np.abs(r.symbols - np.floor(x / r.step)) <= 1)


@pytest.mark.parametrize("make", [lambda s: UniformQuantizer(step=s),
                                  lambda s: EntropyConstrainedQuantizer(step=s, lam=0.3)])
def test_a_given_step_is_the_float32_the_decoder_receives(x, make):
    # the step costs 32 side bits, so the encoder must use exactly the float32 value (0.1e-3 is not one)
    q = make(1e-4)
    qz = q.quantize(x)
    s32 = float(np.float32(1e-4))
    assert qz.step == s32 != 1e-4
    np.testing.assert_array_equal(qz.dequantize(), (qz.symbols * s32).astype(np.float32))
    for bad in (0.0, -1.0, math.nan, math.inf, 1e-50, 1e50):
        with pytest.raises(ValueError, match="step must be positive, finite and within float32"):
            make(bad)
