"""captures.summary: moments and histograms of a layer, on the fast and the blocked CPU paths."""

import math

import numpy as np
import pytest
import scipy.stats
import torch


@pytest.mark.parametrize("dist", ["normal", "laplace", "sparse"])
def test_summary_fast_cpu_path_equals_device_path_and_numpy(dist):
    from captures.summary import _summary_finite_cpu, _summary_masked, layer_summary

    rng = np.random.default_rng(3)
    x = {"normal": rng.normal(size=100_000), "laplace": rng.laplace(size=100_000),
         "sparse": rng.normal(size=100_000) * (rng.random(100_000) < 0.1)}[dist]
    t = torch.from_numpy(x.astype(np.float32))
    x64 = t.double()
    fast_m, fast_c = _summary_finite_cpu(t, float(t.mean()), 128)
    slow_m, slow_c = _summary_masked(x64, 128)
    np.testing.assert_allclose(fast_m.numpy(), slow_m.numpy(), rtol=1e-10)
    np.testing.assert_array_equal(fast_c.numpy(), slow_c.numpy())
    m, c = layer_summary(t, 128)
    np.testing.assert_array_equal(c.numpy(), np.histogram(x64.numpy(), bins=128)[0])
    assert m[7] == np.count_nonzero(x64.numpy() == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_summary_blocked_cpu_path_matches_scipy_with_offset_mean(dtype):
    # a mean 300 std away from 0 (the shifted power sums must not cancel), several blocks and a
    # partial last one, zeros and a constant run; references from the float64 values with scipy/numpy
    from captures.summary import _BLOCK, MOMENT_FIELDS, _summary_finite_cpu, layer_summary

    rng = np.random.default_rng(5)
    n = 2 * _BLOCK + 12_345
    x = 300.0 + rng.standard_t(5, size=n)
    x[:1000] = 0.0
    x[1000:1500] = 301.0
    t = torch.from_numpy(x).to(dtype)
    ref = t.double().numpy()
    m, c = layer_summary(t, 50)
    got = dict(zip(MOMENT_FIELDS, m.tolist(), strict=True))
    assert got["n"] == n and got["zeros"] == 1000 and got["nonfinite"] == 0
    assert got["mean"] == pytest.approx(ref.mean(), rel=1e-12)
    assert got["std"] == pytest.approx(ref.std(), rel=1e-10)
    assert got["abs_mean"] == pytest.approx(np.abs(ref).mean(), rel=1e-12)
    assert got["kurtosis"] == pytest.approx(scipy.stats.kurtosis(ref), rel=1e-8)
    assert (got["min"], got["max"]) == (ref.min(), ref.max())
    np.testing.assert_array_equal(c.numpy(), np.histogram(ref, bins=50)[0])
    # the shift only sets where the power sums are taken: one 0.7 std off gives the same moments
    off = _summary_finite_cpu(t.float() if dtype == torch.float16 else t, float(ref.mean()) + 0.7, 50)
    np.testing.assert_allclose(off[0].numpy(), m.numpy(), rtol=1e-10)
    np.testing.assert_array_equal(off[1].numpy(), c.numpy())
    # a constant tensor whose float32 mean is not exactly its value
    k = layer_summary(torch.full((3 * _BLOCK + 7,), 0.1, dtype=dtype), 4)
    kk = dict(zip(MOMENT_FIELDS, k[0].tolist(), strict=True))
    assert kk["std"] == 0 and math.isnan(kk["kurtosis"])
    assert kk["mean"] == float(torch.tensor(0.1, dtype=dtype))
    assert k[1].tolist() == [3 * _BLOCK + 7, 0, 0, 0]


def test_summary_moments_handle_constant_and_nonfinite():
    from captures.summary import MOMENT_FIELDS, layer_histogram, layer_moments

    x = torch.tensor([1.0, float("nan"), 3.0, float("inf"), 0.0, 2.0])
    got = dict(zip(MOMENT_FIELDS, layer_moments(x).tolist(), strict=True))
    finite = np.array([1.0, 3.0, 0.0, 2.0])
    assert got["n"] == 4 and got["nonfinite"] == 2 and got["zeros"] == 1
    assert got["mean"] == pytest.approx(1.5)
    assert got["kurtosis"] == pytest.approx(scipy.stats.kurtosis(finite))
    assert layer_histogram(x, 3).tolist() == np.histogram(finite, bins=3)[0].tolist()
    const = dict(zip(MOMENT_FIELDS, layer_moments(torch.full((5,), 2.0)).tolist(), strict=True))
    assert const["std"] == 0 and np.isnan(const["kurtosis"])
    assert layer_histogram(torch.full((5,), 2.0), 4).tolist() == [5, 0, 0, 0]
