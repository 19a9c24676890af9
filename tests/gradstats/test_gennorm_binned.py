"""The binned free-loc GenNorm search: its sums against exact passes, and the fits it gives."""
import numpy as np
import pytest
import scipy.stats as st

import gradstats.gennorm_solver as solver
from gradstats import fit
from gradstats.gennorm_binned import CentreBins
from gradstats.gennorm_solver import gennorm_sums


def _sample(beta, n, zeros=0.0, loc=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = st.gennorm.rvs(beta, loc=loc, scale=1e-3, size=n, random_state=rng).astype(np.float32)
    x[rng.random(n) < zeros] = np.float32(loc)
    return x


@pytest.mark.parametrize("zeros", [0.0, 0.1])
@pytest.mark.parametrize("beta", [0.2, 0.6, 0.95])
def test_binned_sums_equal_the_exact_passes(beta, zeros):
    x = _sample(0.7, 300_000, zeros)
    m0, c, h = float(np.median(x)), float(np.abs(x).max()), 2e-5
    bins = CentreBins(x, m0, h, c)
    assert bins.far[0].sum() + bins.ties.sum() == x.size
    for e in (0.0, 0.37 * h / c, -0.99 * h / c):
        got = bins.sums(e, beta, 2)
        want = gennorm_sums(x, m0 + c * e, beta, c, False)
        np.testing.assert_allclose(got, want[:3], rtol=1e-9)


def test_polish_values_are_q_at_the_data_points():
    x = _sample(0.5, 200_000)
    m0, c, h = float(np.median(x)), float(np.abs(x).max()), 2e-5
    bins = CentreBins(x, m0, h, c)
    e = 0.1 * h / c
    cand, q = bins.polish_q(e, 0.5, 0.02 * h / c)
    assert cand.size > 10 and e in cand
    assert np.isin(cand[cand != e], bins.values).all()  # data points (offsets), and e itself
    want = np.array([gennorm_sums(x, m0 + c * v, 0.5, c, False)[0] for v in cand])
    np.testing.assert_allclose(q, want, rtol=1e-10)
    assert np.argmin(q) == np.argmin(want)


@pytest.mark.parametrize("case", [(0.8, 0.0, 0.0), (0.4, 0.0, 3e-4), (0.6, 0.2, 0.0)])
def test_binned_fit_is_the_exact_search_s_fit_or_better(case, monkeypatch):
    beta, zeros, loc = case
    x = _sample(beta, 600_000, zeros, loc, seed=3)
    built = []
    monkeypatch.setattr(solver, "CentreBins", lambda *a: built.append(a) or CentreBins(*a))
    fast = fit(x, "gennorm")
    assert len(built) == 1  # one compressing pass served the whole search
    monkeypatch.setattr(solver, "BINNED_MIN_N", 1 << 40)  # the exact search over every entry
    exact = fit(x, "gennorm")
    # at beta < 1 the likelihood has a cusp at every data point: both searches end on one of the
    # local maxima near the top, within a few 1e-3 nats of each other (0.0016 in case 1)
    assert fast.loglik >= exact.loglik - 0.01
    assert fast.params["beta"] == pytest.approx(exact.params["beta"], rel=1e-5)
    assert abs(fast.params["loc"] - exact.params["loc"]) <= 0.05 * exact.params["scale"]
    # the reported likelihood is that of the reported parameters over every entry
    d = st.gennorm(fast.params["beta"], fast.params["loc"], fast.params["scale"])
    assert fast.loglik == pytest.approx(d.logpdf(x.astype(np.float64)).sum(), rel=1e-9)
    if zeros == 0.0:  # not below scipy's own fit
        b, m, s = st.gennorm.fit(x[:: 10].astype(np.float64))
        assert fast.loglik >= st.gennorm(b, m, s).logpdf(x.astype(np.float64)).sum() - 1e-6

