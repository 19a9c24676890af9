"""Goodness of fit: tail error on a closed-form case, KS/AD/W1 against scipy/statsmodels, QQ data."""

import math

import numpy as np
import pytest
import scipy.stats as st
import torch
from statsmodels.stats.diagnostic import anderson_statistic

from gradstats import (
    GenNorm,
    Laplace,
    Normal,
    StudentT,
    ZeroInflated,
    anderson_darling,
    fit,
    fit_all,
    goodness_of_fit,
    ks_statistic,
    nll_bits,
    qq_data,
    tail_error,
    wasserstein1,
)
from gradstats.goodness import tail_quantiles


def _laplace_quantile_grid(b, n):
    """Signed Laplace(0, b) sample whose |x| are the exact Exp(b) quantiles k/(n-1), k = 0..n-1.

    np.quantile's linear rule reads position (n-1) q, so for (n-1) p integral the empirical
    threshold is exactly t_p = b ln(1/p)."""
    u = np.arange(n) / (n - 1)
    with np.errstate(divide="ignore"):
        a = -b * np.log1p(-u)
    a[-1] = a[-2] * 2  # the q = 1 point is infinite; only the top point changes
    return np.where(np.arange(n) % 2 == 0, a, -a)


def test_tail_error_exact_on_closed_form_case():
    b, n = 2.0, 400_001  # n - 1 divisible by 1e4
    x = _laplace_quantile_grid(b, n)
    ps = (1e-2, 1e-3, 1e-4)
    t = tail_quantiles(x, 0.0, ps)
    for p in ps:
        assert t[p] == pytest.approx(b * math.log(1 / p), rel=1e-12)
    # the true model: error 0; a model with half the scale predicts P = p^(b / b') = p^2
    np.testing.assert_allclose(list(tail_error(x, Laplace(0.0, b), loc=0.0).values()), 0.0, atol=1e-9)
    err = tail_error(x, Laplace(0.0, b / 2), loc=0.0)
    for p in ps:
        assert err[p] == pytest.approx((b / (b / 2) - 1) * math.log10(p), rel=1e-9)
    # Normal with the same variance: far too light tails, increasingly so
    e_norm = tail_error(x, Normal(0.0, b * math.sqrt(2)), loc=0.0)
    assert e_norm[1e-2] < 0 and e_norm[1e-4] < e_norm[1e-3] < e_norm[1e-2]


def test_tail_quantiles_equal_numpy_and_torch():
    x = np.random.default_rng(0).standard_t(3, size=54_321).astype(np.float32)
    ps = (0.05, 1e-2, 1e-3)
    ref = np.quantile(np.abs(x - np.float32(0.1)), [1 - p for p in ps])
    for v in (x, torch.from_numpy(x)):
        got = tail_quantiles(v, 0.1, ps)
        np.testing.assert_allclose([got[p] for p in ps], ref, rtol=1e-6)


def test_tail_error_only_where_resolved():
    x = np.random.default_rng(1).laplace(size=5_000)
    e = tail_error(x, Laplace(0, 1))
    assert math.isfinite(e[1e-2]) and math.isnan(e[1e-3]) and math.isnan(e[1e-4])
    e = tail_error(x, Laplace(0, 1), min_count=5)
    assert math.isfinite(e[1e-3]) and math.isnan(e[1e-4])


def test_ks_equals_scipy_and_subsamples():
    x = np.random.default_rng(2).laplace(0, 1, 30_000)
    d = GenNorm(1.2, 0.0, 1.0)
    assert ks_statistic(x, d, max_n=None) == pytest.approx(st.kstest(x, d.cdf).statistic, rel=1e-14)
    sub = ks_statistic(x, d, max_n=5_000)
    assert sub != ks_statistic(x, d, max_n=None) and abs(sub - ks_statistic(x, d, max_n=None)) < 0.03
    assert ks_statistic(x, d, max_n=5_000, seed=0) == sub  # deterministic


def test_ks_zero_inflated_handles_the_atom():
    rng = np.random.default_rng(3)
    z = ZeroInflated(Laplace(0.0, 1.0), 0.3)
    x = z.sample(4_000, rng)
    d = ks_statistic(x, z, max_n=None)
    # brute force sup over both one-sided limits at every sample value
    u = np.unique(x)
    fn = np.searchsorted(np.sort(x), u, side="right") / x.size
    fn_left = np.searchsorted(np.sort(x), u, side="left") / x.size
    f_left = z.cdf(u) - 0.3 * (u == 0)
    brute = max(np.abs(fn - z.cdf(u)).max(), np.abs(fn_left - f_left).max())
    assert d == pytest.approx(brute, rel=1e-12)
    assert d < 0.03
    assert ks_statistic(x[x != 0], z, max_n=None) > 0.14  # zeros removed: half the jump of 0.3 unmatched


def test_anderson_darling_equals_statsmodels_and_stays_finite_in_tails():
    x = np.random.default_rng(4).normal(0.1, 1.3, 3_000)
    d = Normal(0.0, 1.2)
    ref = anderson_statistic(d.cdf(x), dist=st.uniform, fit=False)
    assert anderson_darling(x, d, max_n=None) == pytest.approx(ref, rel=1e-9)
    y = np.append(x, 60.0)  # a 50-sigma point: statsmodels' log(1 - F) gives inf
    assert math.isinf(anderson_statistic(d.cdf(y), dist=st.uniform, fit=False))
    ad_y = anderson_darling(y, d, max_n=None)
    # the outlier enters through log S(60) = -1251 with weight 1/n
    assert math.isfinite(ad_y) and ad_y > ref + 0.3


def _w1_by_quadrature(y: np.ndarray, d) -> float:
    """int |F_n - F| dx by scipy.integrate.quad on every gap of the sorted y and both ends."""
    from scipy.integrate import quad

    base = d.base if isinstance(d, ZeroInflated) else d
    s = base.scale  # the kinks (0, loc, F = F_n) are break points of the quadrature
    pts = np.r_[y[0] - 200 * s, y, y[-1] + 200 * s]
    tot = 0.0
    for i in range(len(pts) - 1):
        a, b, c = pts[i], pts[i + 1], min(i, y.size) / y.size
        if b > a:
            kinks = [p for p in (0.0, base.loc, float(d.ppf(c))) if a < p < b] or None
            tot += quad(lambda t, c=c: abs(c - float(d.cdf(np.array([t]))[0])), a, b, points=kinks,
                        limit=200, epsabs=1e-14)[0]
    return tot


@pytest.mark.parametrize("dist", [Normal(0.1, 1.0), Laplace(-0.2, 0.5), GenNorm(0.6, 0.0, 1e-3),
                                  GenNorm(2.5, 0.3, 2.0), ZeroInflated(GenNorm(0.8, 0, 1.0), 0.3),
                                  ZeroInflated(Laplace(0.1, 1.0), 0.05)])
@pytest.mark.parametrize("n", [1, 5, 60, 300])
def test_wasserstein_is_the_integral_of_the_cdf_difference(dist, n):
    base = dist.base if isinstance(dist, ZeroInflated) else dist
    y = np.sort(dist.sample(n, n) + 0.05 * base.scale * (n == 60))  # off-centre: F crosses F_n
    y[: n // 3] = np.round(y[: n // 3], 1)  # ties
    ref = _w1_by_quadrature(np.sort(y), dist)
    assert wasserstein1(y, dist, max_n=None) == pytest.approx(ref, rel=1e-8, abs=1e-14)


def test_wasserstein_and_nll_bits():
    g = GenNorm(0.8, 0.0, 1.0)
    x = g.sample(10_000, 5)
    w = wasserstein1(x, g, max_n=None)
    assert wasserstein1(x + 0.5, GenNorm(0.8, 0.5, 1.0), max_n=None) == pytest.approx(w, rel=1e-9)
    assert wasserstein1(2 * x, GenNorm(0.8, 0.0, 2.0), max_n=None) == pytest.approx(2 * w, rel=1e-9)
    # the quantile form (Student t's, and every family's before) is within O(1/n) of the exact one
    quantile_form = st.wasserstein_distance(x, g.ppf((np.arange(x.size) + 0.5) / x.size))
    assert w == pytest.approx(quantile_form, rel=0.05)
    t = StudentT(4.0, 0.0, 1.0)
    t_quantiles = t.ppf((np.arange(x.size) + 0.5) / x.size)
    assert wasserstein1(x, t, max_n=None) == st.wasserstein_distance(x, t_quantiles)
    f = fit(x, "gennorm")
    assert nll_bits(x, f.dist) == pytest.approx(-f.loglik / (x.size * math.log(2)), rel=1e-12)
    assert nll_bits(torch.from_numpy(x), f.dist) == pytest.approx(nll_bits(x, f.dist), rel=1e-12)


def test_qq_data_and_goodness_dict():
    x = np.random.default_rng(6).laplace(size=20_000)
    d = Laplace(0, 1)
    qq = qq_data(x, d, n_points=101)
    assert list(qq.columns) == ["p", "empirical", "model"] and len(qq) == 101
    assert (np.diff(qq["p"]) > 0).all() and qq["p"].iloc[0] < 1e-4
    np.testing.assert_allclose(qq["model"], d.ppf(qq["p"]))
    np.testing.assert_allclose(qq["empirical"], np.quantile(x, qq["p"]))
    gof = goodness_of_fit(x, d)
    tails = {"tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04"}
    assert set(gof) == {"ks", "ad", "w1", "nll_bits"} | tails
    assert math.isnan(gof["tail_log10_1e-04"]) and abs(gof["tail_log10_1e-02"]) < 0.1


def test_goodness_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        ks_statistic(np.array([1.0, np.nan]), Normal())


def test_fit_all_picks_the_generating_family():
    rng = np.random.default_rng(7)
    lap = rng.laplace(0, 0.01, 100_000).astype(np.float32)
    df = fit_all(lap, ["normal", "laplace", "gennorm", "t"])
    assert list(df["family"]) == ["normal", "laplace", "gennorm", "t"]
    assert df.loc[df["best"], "family"].item() == "laplace"  # gennorm's beta ~ 1 costs a BIC parameter
    row = df.set_index("family")
    assert row.loc["gennorm", "beta"] == pytest.approx(1.0, rel=0.03)
    assert row.loc["normal", "tail_log10_1e-04"] < -1  # Normal misses Laplace tails by > 10x
    assert abs(row.loc["laplace", "tail_log10_1e-03"]) < 0.1
    for col in ("ks", "ad", "w1", "nll_bits", "loglik", "aic", "bic", "flags", "beta_se"):
        assert col in df.columns
    zi = ZeroInflated(GenNorm(0.7, 0, 1), 0.2).sample(50_000, 8)
    dz = fit_all(zi, ["laplace", "gennorm", "zi-laplace", "zi-gennorm"], loc=0.0)
    assert dz.loc[dz["best"], "family"].item() == "zi-gennorm"
    assert "beta_at_lower_bound" in dz.set_index("family").loc["gennorm", "flags"]


@pytest.mark.parametrize("zeros", [0.0, 0.3])
def test_goodness_of_a_tensor_runs_as_torch_ops_and_equals_the_numpy_statistics(zeros):
    from gradstats.goodness import Sample, distances
    from gradstats.tables import fit_all

    rng = np.random.default_rng(11)
    x = (rng.standard_t(4, 120_000) * 1e-3).astype(np.float32)
    x[rng.random(x.size) < zeros] = 0.0
    fams = ["normal", "laplace", "gennorm", "zi-gennorm", "zi-laplace", "t"]
    ref = fit_all(x, fams, max_n=50_000).set_index("family")
    s = Sample(torch.from_numpy(x), 50_000)
    assert isinstance(s.sorted, torch.Tensor) and s.sorted.dtype == torch.float64  # stays a tensor
    for fam in fams:
        d = fit(x, fam).dist
        got = distances(s, d, 50_000)
        for k in ("ks", "ad", "w1"):
            assert got[k] == pytest.approx(ref.loc[fam, k], rel=1e-9, abs=1e-15), (fam, k)
    # a whole table from a tensor: its fits differ from numpy's in the last digits (torch.median
    # is the lower middle value), so its statistics agree to the fits' precision
    # (Student t is left out: with 30 % ties its fit on a tensor ends elsewhere)
    closed = fams[:5]
    tab = fit_all(torch.from_numpy(x), closed, max_n=50_000).set_index("family")
    for col in ("ks", "ad", "w1", "tail_log10_1e-03"):
        np.testing.assert_allclose(tab[col], ref.loc[closed, col], rtol=1e-4, err_msg=col)


@pytest.mark.cuda
def test_goodness_on_a_cuda_tensor_stays_there_and_equals_the_host_statistics():
    from gradstats.goodness import Sample, distances

    rng = np.random.default_rng(12)
    x = (rng.standard_t(4, 300_000) * 1e-3).astype(np.float32)
    x[rng.random(x.size) < 0.2] = 0.0
    s = Sample(torch.from_numpy(x).cuda(), 100_000)
    assert s.sorted.is_cuda
    for fam in ("normal", "laplace", "gennorm", "zi-gennorm"):
        d = fit(x, fam).dist
        got, want = distances(s, d, 100_000), distances(Sample(x, 100_000), d, 100_000)
        for k in ("ks", "ad", "w1"):
            assert got[k] == pytest.approx(want[k], rel=1e-9), (fam, k)
