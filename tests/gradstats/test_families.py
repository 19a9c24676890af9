"""Families: every verb against scipy.stats, tail-accurate interval probabilities, zero inflation."""

import math

import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as st

from gradstats import GenNorm, Laplace, Normal, StudentT, ZeroInflated
from gradstats.families import family_name

CASES = [
    (Normal(0.3, 2.0), st.norm(0.3, 2.0)),
    (Laplace(-1.0, 0.5), st.laplace(-1.0, 0.5)),
    (GenNorm(0.4, 0.1, 0.01), st.gennorm(0.4, 0.1, 0.01)),
    (GenNorm(1.3, 0.0, 1.0), st.gennorm(1.3, 0.0, 1.0)),
    (GenNorm(3.0, 2.0, 5.0), st.gennorm(3.0, 2.0, 5.0)),
    (StudentT(2.5, 0.0, 3.0), st.t(2.5, 0.0, 3.0)),
]


@pytest.mark.parametrize("ours,ref", CASES, ids=[repr(c[0]) for c in CASES])
def test_verbs_match_scipy(ours, ref):
    x = ref.ppf(np.linspace(0.001, 0.999, 101))
    q = np.linspace(0.0005, 0.9995, 57)
    for verb, arg in [("pdf", x), ("logpdf", x), ("cdf", x), ("sf", x), ("logcdf", x), ("logsf", x),
                      ("ppf", q), ("isf", q)]:
        np.testing.assert_allclose(getattr(ours, verb)(arg), getattr(ref, verb)(arg), rtol=1e-10,
                                   err_msg=verb)
    assert ours.n_params == len(ours.params) == len(type(ours).param_names)


def test_params_by_name_and_repr():
    g = GenNorm(0.7, 0.1, 2.0)
    assert g.params == {"beta": 0.7, "loc": 0.1, "scale": 2.0}
    assert GenNorm(**g.params) == g
    z = ZeroInflated(g, 0.25)
    assert z.params == {"pi": 0.25, "beta": 0.7, "loc": 0.1, "scale": 2.0}
    assert z.n_params == 4 and z.name == "zi-gennorm"
    assert "GenNorm" in repr(z)


def test_laplace_log_tails_beyond_underflow():
    lap = Laplace(1.0, 2.0)
    # 1000 scales out scipy's log(sf) is -inf; the closed form is exact
    assert lap.logsf(1.0 + 2000.0) == pytest.approx(-math.log(2) - 1000.0, rel=1e-15)
    assert lap.logcdf(1.0 - 2000.0) == pytest.approx(-math.log(2) - 1000.0, rel=1e-15)
    np.testing.assert_allclose(lap.logsf([-3.0, 0.0, 1.0, 4.0]), np.log(lap.sf([-3.0, 0.0, 1.0, 4.0])),
                               rtol=1e-14)


DISTS = [Normal(0, 1), Laplace(0, 1), GenNorm(0.5, 0, 1), GenNorm(2.5, 1, 3), StudentT(3, 0, 1),
         ZeroInflated(GenNorm(0.8, 0, 1), 0.3)]


@pytest.mark.parametrize("dist", DISTS, ids=[repr(d) for d in DISTS])
def test_interval_probs_sum_to_one_and_match_cdf_differences(dist):
    edges = np.concatenate([[-np.inf], np.linspace(-5, 5, 41), [np.inf]])
    p = dist.interval_probs(edges)
    assert p.shape == (42,)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p >= 0).all()
    inner = np.diff(dist.cdf(edges[1:-1]))
    np.testing.assert_allclose(p[1:-1], inner, atol=1e-13)


def test_interval_probs_far_upper_tail_laplace_exact():
    lap = Laplace(0.0, 1.0)
    edges = np.arange(30.0, 700.0, 0.5)
    p = lap.interval_probs(edges)
    a = edges[:-1]
    exact = 0.5 * np.exp(-a) * -np.expm1(-0.5)  # P(a < X <= a + 1/2) in closed form
    np.testing.assert_allclose(p, exact, rtol=1e-12)
    assert (np.diff(lap.cdf(edges))[a > 40] == 0).all()  # the naive difference loses these cells


def test_interval_probs_far_tails_normal_and_gennorm():
    nrm = Normal(0.0, 1.0)
    edges = np.linspace(-37.0, -9.0, 57)
    # lower tail reference: ndtr is accurate there
    np.testing.assert_allclose(nrm.interval_probs(edges), np.diff(sc.ndtr(edges)), rtol=1e-9)
    up = -edges[::-1]
    np.testing.assert_allclose(nrm.interval_probs(up), np.diff(sc.ndtr(edges))[::-1], rtol=1e-9)
    beta = 0.5
    g = GenNorm(beta, 0.0, 1.0)
    e = np.linspace(2000.0, 40000.0, 20)
    ref = 0.5 * -np.diff(sc.gammaincc(1 / beta, e**beta))
    assert (ref > 0).all() and (ref < 1e-17).all()
    np.testing.assert_allclose(g.interval_probs(e), ref, rtol=1e-9)
    assert (np.diff(g.cdf(e)) == 0).all()


def test_interval_probs_rejects_bad_edges():
    with pytest.raises(ValueError, match="non-decreasing"):
        Normal().interval_probs([0.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        Normal().interval_probs([0.0])


def test_zero_inflated_cdf_ppf_and_cell_of_zero():
    base = Laplace(0.5, 1.0)
    z = ZeroInflated(base, 0.4)
    assert z.cdf(0.0) - z.cdf(-1e-12) == pytest.approx(0.4, abs=1e-9)
    assert z.sf(-1e-12) - z.sf(0.0) == pytest.approx(0.4, abs=1e-9)
    lo = 0.6 * base.cdf(0.0)
    q = np.array([lo * 0.5, lo + 0.01, lo + 0.39, lo + 0.41, 0.999])
    x = z.ppf(q)
    assert x[1] == 0.0 and x[2] == 0.0
    np.testing.assert_allclose(z.cdf(x[[0, 3, 4]]), q[[0, 3, 4]], rtol=1e-10)
    np.testing.assert_allclose(z.isf(1 - q[[0, 3, 4]]), x[[0, 3, 4]], rtol=1e-9)
    edges = np.array([-np.inf, -1.0, -0.25, 0.0, 0.25, np.inf])
    p = z.interval_probs(edges)
    np.testing.assert_allclose(p, 0.6 * base.interval_probs(edges) + 0.4 * (np.arange(5) == 2), atol=1e-15)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(p[1:-1], np.diff(z.cdf(edges[1:-1])), atol=1e-15)
    # log density: atom weight at 0, (1 - pi) f elsewhere
    assert z.logpdf(0.0) == pytest.approx(math.log(0.4))
    assert z.logpdf(2.0) == pytest.approx(math.log(0.6) + base.logpdf(2.0))
    np.testing.assert_allclose(np.exp(z.logcdf([-2.0, 0.0, 3.0])), z.cdf([-2.0, 0.0, 3.0]), rtol=1e-12)
    np.testing.assert_allclose(np.exp(z.logsf([-2.0, 0.0, 3.0])), z.sf([-2.0, 0.0, 3.0]), rtol=1e-12)


def test_sample_reproducible_and_distributed_as_the_family():
    g = GenNorm(0.7, 0.0, 2.0)
    a, b = g.sample(20000, 3), g.sample(20000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert st.kstest(a, g.cdf).pvalue > 1e-3
    z = ZeroInflated(g, 0.3).sample(20000, 1)
    assert abs((z == 0).mean() - 0.3) < 0.015


def test_constructor_errors():
    with pytest.raises(ValueError, match="scale"):
        Normal(0, 0)
    with pytest.raises(ValueError, match="beta"):
        GenNorm(-1.0)
    with pytest.raises(ValueError, match="df"):
        StudentT(0.0)
    with pytest.raises(ValueError, match="pi"):
        ZeroInflated(Normal(), 1.0)
    with pytest.raises(ValueError, match="base"):
        ZeroInflated(ZeroInflated(Normal(), 0.1), 0.1)
    with pytest.raises(ValueError, match="unknown family"):
        family_name("cauchy")
    assert family_name("Gaussian") == "normal" and family_name("zi-GGD") == "zi-gennorm"


@pytest.mark.parametrize("cls", [Normal, Laplace, GenNorm, StudentT])
def test_every_parameter_is_checked_by_name(cls):
    good = cls().params
    for k in cls.param_names:
        bad = [math.nan, math.inf] + ([] if k == "loc" else [0.0, -1.0])
        for v in bad:
            with pytest.raises(ValueError, match=rf"^{cls.__name__}: {k} must be finite"):
                cls(**{**good, k: v})
    d = cls(**good)
    assert d.params == good and d.logpdf(0.5) == pytest.approx(d._frozen.logpdf(0.5))


def test_normal_verbs_are_scipys_to_the_last_bit():
    """Normal evaluates scipy.special directly (no scipy.stats wrapper): the same numbers."""
    rng = np.random.default_rng(0)
    for loc, scale in [(0.0, 1.0), (1e-4, 2e-3), (5.0, 1e5)]:
        d, ref = Normal(loc, scale), st.norm(loc, scale)
        x = np.r_[rng.normal(loc, 30 * scale, 20_000), [np.inf, -np.inf, np.nan, loc, 1e300]]
        q = np.r_[rng.random(20_000), [0.0, 1.0, -0.1, 1.1, np.nan, 1e-300]]
        with np.errstate(all="ignore"):
            for verb in ("cdf", "sf", "logcdf", "logsf"):
                np.testing.assert_array_equal(getattr(d, verb)(x), getattr(ref, verb)(x), err_msg=verb)
            np.testing.assert_array_equal(d.ppf(q), ref.ppf(q))
