"""The GenNorm profile-likelihood solver: its derivatives and how often it reads the data."""

import math

import numpy as np
import pytest
import scipy.stats as st

import gradstats.gennorm_solver as solver
from gradstats import fit
from gradstats.gennorm_solver import gennorm_sums, profile_grad_hess, profile_loglik


def _gennorm_sample(beta, scale, n, seed, loc=0.0):
    return st.gennorm.rvs(beta, loc=loc, scale=scale, size=n, random_state=seed)


def test_profile_derivatives_match_finite_differences():
    x = _gennorm_sample(0.9, 1.0, 20_000, seed=3)
    c, n = float(np.abs(x).max()), x.size

    def prof(b):
        return profile_loglik(b, gennorm_sums(x, 0.0, b, c, False)[0], n, math.log(c))

    for b in (0.5, 0.9, 2.0):
        g, h = profile_grad_hess(b, *gennorm_sums(x, 0.0, b, c, False), n)
        e = 1e-4
        assert g == pytest.approx((prof(b + e) - prof(b - e)) / (2 * e), rel=1e-5, abs=1e-9)
        assert h == pytest.approx((prof(b + e) - 2 * prof(b) + prof(b - e)) / e**2, rel=1e-3)


def test_large_float32_fixed_loc_fit_reads_the_data_twice(monkeypatch):
    """One float32 pass (Taylor model in beta) + one float64 pass; the rest runs on a subsample."""
    n = 400_000
    x = _gennorm_sample(0.9, 1e-3, n, seed=12).astype(np.float32)
    full = []
    for name in ("chunked_sum", "chunked_sum_f32"):
        orig = getattr(solver, name)

        def counted(v, *a, _orig=orig, _name=name, **k):
            if len(v) == n:
                full.append(_name)
            return _orig(v, *a, **k)

        monkeypatch.setattr(solver, name, counted)
    f = fit(x, "gennorm", loc=0.0)
    assert full == ["chunked_sum_f32", "chunked_sum"]
    ref = fit(x.astype(np.float64), "gennorm", loc=0.0)
    assert f.loglik == pytest.approx(ref.loglik, abs=1e-5)
