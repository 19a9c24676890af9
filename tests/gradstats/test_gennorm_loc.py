"""The GenNorm location searches: the polish over data points for beta < 1."""

import warnings

import numpy as np
import pytest
import scipy.stats as st

from gradstats.gennorm_loc import loc_polish


def testloc_polish_is_the_best_data_point():
    x = st.gennorm.rvs(0.6, scale=1.0, size=20_000, random_state=7)
    beta, mu, w = 0.6, 0.01, 2e-3
    got = loc_polish(x, beta, mu, w, float(np.abs(x).max()))
    cands = np.concatenate([[mu], x[np.abs(x - mu) <= w]])
    assert cands.size > 5
    q = (np.abs(x[None, :] - cands[:, None]) ** beta).sum(axis=1)
    assert got == pytest.approx(cands[np.argmin(q)], abs=1e-15)
    # the same through torch
    torch = pytest.importorskip("torch")
    assert loc_polish(torch.from_numpy(x), beta, mu, w, float(np.abs(x).max())) == got


def test_loc_polish_with_an_empty_window_and_entries_at_the_loc_is_clean():
    # w = 0 sends every entry, those exactly at the loc included, to the far-field series
    x = np.r_[np.zeros(1000), np.random.default_rng(0).laplace(size=5000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert loc_polish(x, 0.7, 0.0, 0.0, 1.0) == 0.0


def test_neighbours_of_float32_equal_the_float64_pass():
    from gradstats.gennorm_loc import neighbours

    rng = np.random.default_rng(7)
    for _ in range(300):
        x = (rng.standard_normal(int(rng.integers(1, 40))) * 10 ** rng.uniform(-8, 2)).astype(np.float32)
        for mu in (float(x[0]), float(x[0]) * (1 + 1e-12), float(rng.standard_normal() * np.abs(x).max())):
            d = x.astype(np.float64) - mu
            ref = [mu + v for v in (d[d <= 0].max(initial=-np.inf), d[d > 0].min(initial=np.inf))
                   if np.isfinite(v)]
            assert neighbours(x, mu) == ref
            assert neighbours(x.astype(np.float64), mu) == ref
