"""The family behind a codebook: gradstats families as is, scipy wrapped, anything else refused."""

import numpy as np
import pytest
import scipy.stats

from coders.family_fit import FrozenScipy, as_family, fit_dist, fit_with_flags
from gradstats.families import Laplace


def test_as_family_takes_families_and_frozen_scipy_only():
    lap = Laplace(0.0, 2.0)
    assert as_family(lap) is lap
    w = as_family(scipy.stats.laplace(scale=2.0))
    assert isinstance(w, FrozenScipy) and w.n_params == 1 and w.params == {}
    e = np.array([-np.inf, -1.0, 0.5, 3.0, np.inf])
    np.testing.assert_allclose(w.interval_probs(e), lap.interval_probs(e), rtol=1e-12)
    with pytest.raises(ValueError, match="gradstats family"):
        as_family(object())


def test_fit_dist_fits_names_and_reports_flags():
    x = np.random.default_rng(0).laplace(0.0, 3.0, 50_000)
    d, flags = fit_with_flags(x, "laplace")
    assert isinstance(d, Laplace) and abs(d.scale - 3.0) < 0.05 and flags == ()
    assert fit_dist(x, "laplace", loc=0.0).loc == 0.0
    with pytest.raises(ValueError, match="one distinct value"):
        fit_dist(np.ones(10), "gennorm")
    with pytest.raises(ValueError, match="empty"):
        fit_dist(np.zeros(0), "gennorm")
