"""Scale invariance over the whole float range (issue 15 item 1): every quantizer gives the same
symbols for x * 2^k as for x, k in -1000..1000 (float64) and -140..120 (float32), numpy and torch
alike; the power of two it divides by costs 16 side bits."""

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coders.quantizers import (
    EntropyConstrainedQuantizer,
    LloydMaxQuantizer,
    NonFiniteInputError,
    UniformQuantizer,
    nonfinite_summary,
)

QUANTIZERS = {
    "uniform": lambda: UniformQuantizer(scale_mult=0.5),
    "uniform-L16": lambda: UniformQuantizer(levels=16),
    "uniform-block": lambda: UniformQuantizer(scale_mult=1.0, block_size=128),
    "uniform-L16-block": lambda: UniformQuantizer(levels=16, block_size=64),
    "uniform-stochastic": lambda: UniformQuantizer(scale_mult=0.5, stochastic=True, seed=3),
    "ecsq": lambda: EntropyConstrainedQuantizer(scale_mult=1.0, lam=0.3),
}


def base(n=3000, seed=0):
    """Laplace values, none smaller than 2^-20 (so x * 2^k stays a normal float over the range)."""
    g = np.random.default_rng(seed).laplace(size=n)
    return np.where(np.abs(g) < 2.0**-20, np.copysign(2.0**-20, g), g)


def exponent_bits(q):
    return 16 if q.exponent else 0


@pytest.mark.parametrize("name", QUANTIZERS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.one_of(st.integers(-1000, 1000), st.sampled_from([-1000, -65, -64, 64, 65, 664, 1000])))
def test_float64_symbols_identical_at_every_power_of_two(name, k):
    x = base()
    ref = QUANTIZERS[name]().quantize(x)
    q = QUANTIZERS[name]().quantize(np.ldexp(x, k))
    np.testing.assert_array_equal(q.symbols, ref.symbols)
    assert q.side_bits == ref.side_bits + exponent_bits(q)
    m = np.abs(np.ldexp(x, k)).max()
    assert (q.exponent != 0) == (not 2.0**-64 <= m <= 2.0**64)
    back = q.dequantize()
    np.testing.assert_array_equal(back, np.ldexp(ref.dequantize().astype(np.float64), k))
    assert back.dtype == (np.float64 if q.exponent else np.float32)


@pytest.mark.parametrize("name", QUANTIZERS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.one_of(st.integers(-140, 120), st.sampled_from([-140, -126, -100, -64, 64, 100, 120])))
def test_float32_symbols_identical_at_every_power_of_two(name, k):
    x = base().astype(np.float32)
    ref = QUANTIZERS[name]().quantize(x)
    xs = np.ldexp(x, k)
    q = QUANTIZERS[name]().quantize(xs)
    if k >= -100:  # every entry a normal float32: the scaled input is exact, so are the symbols
        np.testing.assert_array_equal(q.symbols, ref.symbols)
        np.testing.assert_array_equal(q.dequantize(), np.ldexp(ref.dequantize(), k))
    else:  # subnormals keep fewer bits: a few entries may round to the neighbouring symbol
        d = np.abs(q.symbols - ref.symbols)
        assert d.max() <= 1 and d.mean() < 0.01
    assert q.dequantize().dtype == np.float32
    assert q.distortion(xs).snr_db == pytest.approx(ref.distortion(x).snr_db, abs=0.2)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.sampled_from([-1000, -300, -70, 0, 70, 300, 664, 1000]))
def test_lloyd_max_is_scale_invariant(k):
    x = base(2000)
    ref = LloydMaxQuantizer(8, family="gennorm").quantize(x)
    q = LloydMaxQuantizer(8, family="gennorm").quantize(np.ldexp(x, k))
    # the fit runs on x / 2^E, not on x: equal up to the solver's tolerance
    assert np.mean(q.symbols == ref.symbols) > 0.99
    assert q.distortion(np.ldexp(x, k)).snr_db == pytest.approx(ref.distortion(x).snr_db, abs=0.05)
    assert q.side_bits == 32 * 8 + exponent_bits(q)


@pytest.mark.parametrize("scale,dtype", [(1e-30, np.float32), (1e19, np.float32), (1e20, np.float32),
                                         (1e200, np.float64), (1e-300, np.float64), (2.0**-140, np.float32)])
def test_issue15_cases_quantize_like_unit_scale(scale, dtype):
    # were: step 1.0 and all symbols 0 (1e-30), INT64_MIN symbols (1e19), OverflowError (1e20, 1e200)
    g = np.random.default_rng(0).standard_normal(10_000)
    for make in (lambda: UniformQuantizer(scale_mult=1.0), lambda: UniformQuantizer(levels=16),
                 lambda: EntropyConstrainedQuantizer(scale_mult=1.0)):
        ref, q = make().quantize(g.astype(dtype)), make().quantize((g * scale).astype(dtype))
        assert np.abs(q.symbols).max() <= 8 and np.unique(q.symbols).size >= 7
        assert np.mean(q.symbols == ref.symbols) > 0.9
        assert q.distortion((g * scale).astype(dtype)).snr_db > 5


def test_numpy_and_torch_agree_at_every_scale():
    x = base()
    for k in (-1000, -200, -70, 0, 70, 200, 1000):
        xs = np.ldexp(x, k)
        for make in (lambda: UniformQuantizer(scale_mult=0.5), lambda: UniformQuantizer(levels=16),
                     lambda: UniformQuantizer(scale_mult=1.0, block_size=128)):
            a, b = make().quantize(xs), make().quantize(torch.from_numpy(xs))
            np.testing.assert_array_equal(a.symbols, b.symbols)
            assert (a.exponent, a.side_bits) == (b.exponent, b.side_bits)
            assert b.dequantize().dtype == (torch.float64 if b.exponent else torch.float32)
    for k in (-140, -100, -70, 0, 70, 120):
        xs = np.ldexp(x.astype(np.float32), k)
        for make in (lambda: UniformQuantizer(scale_mult=0.5), lambda: UniformQuantizer(levels=16)):
            np.testing.assert_array_equal(make().quantize(xs).symbols,
                                          make().quantize(torch.from_numpy(xs)).symbols)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_numpy_at_extreme_scales():
    x = base()
    for k, dt in ((-1000, np.float64), (1000, np.float64), (-140, np.float32), (120, np.float32)):
        xs = np.ldexp(x.astype(dt), k)
        for make in (lambda: UniformQuantizer(scale_mult=0.5), lambda: UniformQuantizer(levels=16),
                     lambda: UniformQuantizer(scale_mult=1.0, block_size=128)):
            a, b = make().quantize(xs), make().quantize(torch.from_numpy(xs).cuda())
            assert np.mean(a.symbols == b.symbols) > 0.999 and a.exponent == b.exponent


def test_a_step_too_small_for_the_input_is_refused():
    with pytest.raises(ValueError, match="step is too small"):
        UniformQuantizer(step=1e-30).quantize(np.array([1e20, -3.0]))
    with pytest.raises(ValueError, match="step is too small"):
        UniformQuantizer(step=1e-30).quantize(torch.tensor([1e20, -3.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="normal range"):
        UniformQuantizer(step=1e-40)  # a subnormal float32 step has no float32 reciprocal
    with pytest.raises(ValueError, match="overflows float32"):
        UniformQuantizer(scale_mult=1e39).quantize(np.array([1.0, -1.0]))


def test_a_given_distribution_too_wide_for_float32_levels_is_refused():
    from gradstats.families import Normal

    with pytest.raises(ValueError, match="overflow float32"):
        LloydMaxQuantizer(4, family=Normal(loc=0.0, scale=1e200)).quantize(np.array([1e200, -1e200, 3e199]))


def test_nonfinite_input_names_what_is_wrong():
    a = np.array([1.0, np.nan, 2.0, np.inf, np.nan, -np.inf], dtype=np.float32)
    msg = "2 NaN, 1 +Inf, 1 -Inf of 6 entries (first at flat index 1)"
    assert nonfinite_summary(a) == msg == nonfinite_summary(torch.from_numpy(a))
    assert nonfinite_summary(np.ones(3)) is None and nonfinite_summary(np.arange(3)) is None
    for q in (UniformQuantizer(scale_mult=0.5), EntropyConstrainedQuantizer(scale_mult=1.0),
              LloydMaxQuantizer(4)):
        for bad in (a, torch.from_numpy(a)):
            with pytest.raises(NonFiniteInputError, match=re.escape(msg)):
                q.quantize(bad)
    assert issubclass(NonFiniteInputError, ValueError)
