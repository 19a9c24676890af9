"""fit_all shares work across families (one sorted subsample, one cdf evaluation, the zero-inflated
base fit) and still gives the numbers of the separate computations, to the last bit."""

import math

import numpy as np
import pytest
import scipy.stats as st
from scipy.stats import gennorm as scipy_gennorm

from gradstats import (
    GenNorm,
    Laplace,
    Normal,
    ZeroInflated,
    anderson_darling,
    fit,
    fit_all,
    ks_statistic,
    tail_error,
    wasserstein1,
)
from gradstats.goodness import Sample, distances, tail_column

FAMS = ["normal", "laplace", "gennorm", "zi-gennorm", "zi-laplace", "t"]


def _sample(n, zeros, seed):
    rng = np.random.default_rng(seed)
    x = st.gennorm.rvs(0.8, scale=1e-3, size=n, random_state=rng).astype(np.float32)
    x[rng.random(n) < zeros] = 0
    return x


@pytest.mark.parametrize("zeros", [0.0, 0.25])
@pytest.mark.parametrize("loc", ["fit", 0.0])
def test_fit_all_equals_each_family_fitted_and_measured_alone(zeros, loc):
    x = _sample(250_000, zeros, seed=3)  # above max_n: the goodness statistics subsample
    df = fit_all(x, FAMS, loc=loc, max_n=100_000, seed=4).set_index("family")
    for fam in FAMS:
        ref = fit(x, fam, loc=loc)  # the one-family path: its own zero count, non-zeros and base fit
        ref_dist, ref_ll = ref.dist, ref.loglik
        row = df.loc[fam]
        assert row["loglik"] == ref_ll
        for name, value in ref_dist.params.items():
            assert row[name] == value, (fam, name)
        assert row["ks"] == ks_statistic(x, ref_dist, 100_000, 4)
        assert row["ad"] == anderson_darling(x, ref_dist, 100_000, 4)
        assert row["w1"] == wasserstein1(x, ref_dist, 100_000, 4)
        for p, e in tail_error(x, ref_dist).items():
            assert row[tail_column(p)] == e or (math.isnan(e) and math.isnan(row[tail_column(p)]))


def test_zero_inflated_without_zeros_is_its_base_family():
    x = _sample(20_000, 0.0, seed=5)
    df = fit_all(x, ["gennorm", "zi-gennorm"]).set_index("family")
    g, z = df.loc["gennorm"], df.loc["zi-gennorm"]
    assert z["pi"] == 0 and z["k"] == g["k"] + 1 and z["bic"] == g["bic"] + math.log(len(x))
    for col in ("beta", "loc", "scale", "loglik", "ks", "ad", "w1", "tail_log10_1e-03"):
        assert z[col] == g[col], col


@pytest.mark.parametrize("beta", [0.05, 0.3, 0.5, 0.8, 1.0, 2.0, 7.3, 50.0])
def test_gennorm_cdf_logs_are_its_cdf_logcdf_logsf_to_the_last_bit(beta):
    d = GenNorm(beta, 1e-4, 2e-3)
    y = np.sort(np.r_[d.sample(20_000, 1), [-np.inf, np.inf, 0.0, 1e-4, -1.0, 1.0, 1e300]])
    # with and without points outside the support (scipy's wrapper takes two paths)
    for ys in (y, y[np.isfinite(y)]):
        with np.errstate(over="ignore"):
            f, log_f, log_s = d.cdf_logs(ys)
            np.testing.assert_array_equal(f, d.cdf(ys))
            np.testing.assert_array_equal(f, scipy_gennorm(beta, 1e-4, 2e-3).cdf(ys))
            ref = scipy_gennorm(beta, 1e-4, 2e-3)  # GenNorm's own logcdf / logsf are cdf_logs'
            np.testing.assert_array_equal(log_f, ref.logcdf(ys))
            np.testing.assert_array_equal(log_s, ref.logsf(ys))
            np.testing.assert_array_equal(d.logcdf(ys), ref.logcdf(ys))
            np.testing.assert_array_equal(d.logsf(ys), ref.logsf(ys))


@pytest.mark.parametrize("dist", [Normal(0, 1e-3), Laplace(1e-4, 1e-3), GenNorm(0.7, 0, 1e-3),
                                  ZeroInflated(GenNorm(0.7, 0, 1e-3), 0.2)])
def test_one_sorted_sample_gives_scipys_ks_exactly_and_w1_near_the_quantile_form(dist):
    x = _sample(50_000, 0.2, seed=6)  # float32: many ties, and exact zeros
    y = np.sort(x.astype(np.float64))
    d = distances(Sample(x, None), dist, None)
    # exact W1 (test_goodness checks it against quadrature) vs the n-point quantile form
    assert d["w1"] == pytest.approx(st.wasserstein_distance(y, dist.ppf((np.arange(y.size) + 0.5) / y.size)),
                                    rel=0.02)
    if not isinstance(dist, ZeroInflated):
        assert d["ks"] == st.kstest(y, dist.cdf).statistic
    assert d == {"ks": ks_statistic(x, dist, None), "ad": anderson_darling(x, dist, None),
                 "w1": wasserstein1(x, dist, None)}


def test_zero_inflated_quantiles_only_evaluate_the_base_where_needed():
    z = ZeroInflated(GenNorm(0.8, 0, 1.0), 0.3)
    q = np.r_[np.linspace(0, 1, 2001), [-0.1, 1.1, np.nan]]
    with np.errstate(invalid="ignore"):
        lower, upper = z.base.ppf(q / 0.7), z.base.ppf((q - 0.3) / 0.7)
    below = 0.7 * 0.5
    ref = np.where(q <= below, lower, np.where(q <= below + 0.3, 0.0, upper))
    ref = np.where((q < 0) | (q > 1) | np.isnan(q), np.nan, ref)
    np.testing.assert_array_equal(z.ppf(q), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tail_order_statistics_from_the_shared_pool_equal_a_full_partition(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_t(3, 300_000) * 1e-3).astype(dtype)
    x[:5000] = 0.0  # ties
    s = Sample(x, None)
    k = 3002
    for loc in (0.0, 1e-6, -3e-5, 2e-4, 0.5):  # the last one is far: a full partition again
        a = np.abs(x - x.dtype.type(loc))
        want = np.sort(np.partition(a, a.size - k)[a.size - k :]).astype(np.float64)
        np.testing.assert_array_equal(s.upper_abs(loc, k), want)
    assert s._pool is not None and s._pool[2].size < x.size // 10  # one shared pool served them


@pytest.mark.parametrize("beta", [0.05, 0.5, 0.8, 2.0, 7.0])
def test_gennorm_and_laplace_cdf_sf_ppf_are_scipy_s_to_the_last_bit(beta):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(5000) * 4, [0.0, 1e-300, -50.0, 1e6]])
    q = np.concatenate([rng.random(5000), [0.5, 1e-300]])
    # scipy's wrapper takes another path when a point is outside the support or (0, 1)
    for xs, qs in ((x, q), (np.r_[x, -np.inf, np.inf, np.nan], np.r_[q, 0.0, 1.0, -0.1, np.nan]),
                   (x[:1], q[:1])):
        _check_gennorm_and_laplace(beta, xs, qs)


def _check_gennorm_and_laplace(beta, x, q):
    from gradstats.families import GenNorm, Laplace

    for loc, scale in ((0.0, 1.0), (0.3, 2e-3)):
        d, ref = GenNorm(beta, loc, scale), st.gennorm(beta, loc, scale)
        xx = loc + scale * x
        np.testing.assert_array_equal(d.cdf(xx), ref.cdf(xx))
        np.testing.assert_array_equal(d.sf(xx), ref.sf(xx))
        np.testing.assert_array_equal(d.ppf(q), ref.ppf(q))
        lap, lref = Laplace(loc, scale), st.laplace(loc, scale)
        np.testing.assert_array_equal(lap.cdf(xx), lref.cdf(xx))
        np.testing.assert_array_equal(lap.sf(xx), lref.sf(xx))
        np.testing.assert_array_equal(lap.ppf(q), lref.ppf(q))
