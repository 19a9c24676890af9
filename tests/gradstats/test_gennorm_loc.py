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
    for _ in range(300):  # float64 data off the float32 grid, mu at, between and beyond them
        x = rng.standard_normal(int(rng.integers(1, 40))) * 10 ** rng.uniform(-8, 2)
        for mu in (float(x[0]), float(x[0]) * (1 + 1e-15), float(rng.standard_normal() * np.abs(x).max())):
            d = x - mu
            ref = [mu + v for v in (d[d <= 0].max(initial=-np.inf), d[d > 0].min(initial=np.inf))
                   if np.isfinite(v)]
            assert neighbours(x, mu) == ref


def test_quantile_pair_is_numpys_quantile_bit_for_bit():
    from gradstats.gennorm_loc import quantile_pair

    rng = np.random.default_rng(3)
    for trial in range(600):
        n = int(rng.choice([1, 2, 3, 10, 101, 4097, 65536]))
        x = rng.standard_normal(n) * 10 ** rng.uniform(-6, 3)
        if trial % 3 == 0:
            x = np.round(x, 1)  # ties
        if trial % 5 == 0:
            x = x.astype(np.float32)
        t = min(0.45, 5 / np.sqrt(n)) if trial % 2 else rng.uniform(0, 0.5)
        q = (0.5 - t, 0.5 + t) if trial % 7 else tuple(np.sort(rng.uniform(0, 1, 2)))
        want = np.quantile(x, q)
        assert quantile_pair(x, *q) == (float(want[0]), float(want[1]))
    assert quantile_pair(np.arange(5.0), 0.0, 1.0) == (0.0, 4.0)


@pytest.mark.parametrize("beta", [0.3, 0.6, 0.9])
def test_loc_search_on_the_bins_ends_where_the_exact_passes_do(beta, monkeypatch):
    import gradstats.gennorm_loc as loc

    x = st.gennorm.rvs(beta, scale=1e-3, size=60_000, random_state=11).astype(np.float32)
    c, mu = float(np.abs(x).max()), float(np.median(x))
    h = loc.center_half_width(x, len(x))
    xtol = 1e-3 * h
    built = []
    real = loc.CentreBins
    monkeypatch.setattr(loc, "CentreBins", lambda *a: built.append(a) or real(*a))
    binned = loc.loc_search(x, beta, mu, h, c, xtol)
    assert len(built) == 1  # one compressing pass served the Brent search
    built.clear()
    monkeypatch.setattr(loc, "BINNED_SEARCH_MIN_N", 1 << 40)
    exact = loc.loc_search(x, beta, mu, h, c, xtol)
    assert binned in x and binned == exact
    # float64 data off the float32 grid is never binned (CentreBins would see it rounded)
    monkeypatch.setattr(loc, "BINNED_SEARCH_MIN_N", 1 << 15)
    y = x.astype(np.float64) * (1 + 1e-9)
    assert loc.loc_search(y, beta, mu, h, c, xtol) in y and not built
