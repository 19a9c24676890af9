"""gradstats.sorted_cdf: the interpolated cdf along a sorted sample against the exact evaluation
(`Family.cdf_logs` and the closed-form integral of F) on synthetic and real gradients."""

import numpy as np
import pytest

from gradstats import goodness as gof
from gradstats.families import GenNorm, Laplace, Normal, StudentT, ZeroInflated
from gradstats.sorted_cdf import MIN_POINTS, sorted_cdf, supports


def _exact(dist, y):
    f, log_f, log_s = dist.cdf_logs(y)
    return f, log_f, log_s, gof._cdf_integral(dist, y)


def _exact_distances(y, dist):
    base = dist.base if isinstance(dist, ZeroInflated) else dist
    f, log_f, log_s = base.cdf_logs(y)
    return {"ks": gof._ks_sorted(y, dist, f), "ad": gof._ad_sorted(y, dist, (log_f, log_s)),
            "w1": gof._w1_sorted(y, dist, f)}


def _samples(dist, rng, n=60_000):
    """The model's own draws, a heavier-tailed sample (t with 3 df), float32 ties with 20% exact zeros."""
    own = dist.sample(n, rng)
    heavy = dist.loc + dist.scale * rng.standard_t(3, n)
    ties = dist.sample(n, rng).astype(np.float32).astype(np.float64)
    ties[rng.random(n) < 0.2] = 0.0
    return {"own": own, "heavy": heavy, "ties": ties}


def _small_side_rel(a, b):
    ta, tb = np.minimum(a, 1 - a), np.minimum(b, 1 - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.abs(ta - tb) / tb
    e[ta == tb] = 0.0
    return float(np.nanmax(e))


@pytest.mark.parametrize("dist", [Normal(0.1, 2.0), Laplace(-0.3, 0.5)]
                         + [GenNorm(b, 1e-2, 1e-3) for b in (0.05, 0.15, 0.4, 1.0, 2.0, 7.3, 50.0)],
                         ids=lambda d: repr(d))
def test_sorted_cdf_matches_the_exact_evaluation(dist):
    rng = np.random.default_rng(7)
    for name, x in _samples(dist, rng).items():
        y = np.sort(x)
        got = sorted_cdf(dist, y)
        f, log_f, log_s, phi = _exact(dist, y)
        # the small tail min(F, 1 - F) to ~1e-12 relative, far into both tails
        assert _small_side_rel(got.cdf, f) < 3e-12, name
        np.testing.assert_allclose(got.log_cdf, log_f, rtol=3e-12, atol=0, err_msg=name)
        np.testing.assert_allclose(got.log_sf, log_s, rtol=3e-12, atol=0, err_msg=name)
        np.testing.assert_allclose(got.phi, phi, rtol=1e-10, atol=0, err_msg=name)
        if not dist.tail_interpolation:
            assert got.exact == y.size  # a cheap tail: every point exactly
            np.testing.assert_allclose(got.cdf, f, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dist", [GenNorm(0.4, 1e-2, 1e-3), GenNorm(1.6, 0.0, 1e-3), Normal(0.0, 1e-3),
                                  ZeroInflated(GenNorm(0.6, 0.0, 1e-3), 0.2)], ids=lambda d: repr(d))
def test_distances_equal_the_exact_ones_to_1e9(dist):
    rng = np.random.default_rng(8)
    base = dist.base if isinstance(dist, ZeroInflated) else dist
    for name, x in _samples(base, rng).items():
        y = np.sort(x)
        ref = _exact_distances(y, dist)
        got = gof.distances(gof.Sample(y, None), dist, None)
        for k in ("ks", "ad", "w1"):
            if np.isinf(ref[k]):
                assert np.isinf(got[k]), (name, k)
            else:
                assert got[k] == pytest.approx(ref[k], rel=1e-9), (name, k)


@pytest.mark.parametrize("beta", [0.2, 0.7, 1.6])
def test_interpolation_evaluates_few_points_exactly_on_a_smooth_sample(beta):
    """In u^beta below beta = 1 (`tail_power`), in u above: either way few blocks fail their check."""
    d = GenNorm(beta, 0.0, 1.0)
    assert d.tail_power == min(beta, 1.0)
    y = np.sort(d.sample(200_000, 1))
    got = sorted_cdf(d, y)
    # nodes and check points are 1/16 of the points; the failed blocks (tails, next to loc) a few %
    assert 200_000 / 16 <= got.exact < 0.2 * 200_000


def test_small_samples_and_families_without_a_standard_tail_are_exact():
    d = GenNorm(0.7, 0.0, 1.0)
    y = np.sort(d.sample(MIN_POINTS - 1, 2))
    got = sorted_cdf(d, y)
    f, log_f, log_s, phi = _exact(d, y)
    assert got.exact == y.size
    np.testing.assert_allclose(got.cdf, f, rtol=1e-15)
    assert not supports(StudentT(4.0, 0.0, 1.0)) and supports(d)


def test_real_gradients_of_both_workloads(workload_grads):
    """Every layer of digits-cnn and stdlib-lm above the interpolation's minimum, against its own
    GenNorm fit: the statistics equal the exact evaluation's to 1e-9."""
    from gradstats import fit

    checked = 0
    for name, g in workload_grads.items():
        x = g.detach().cpu().numpy().ravel().astype(np.float64)
        if x.size < 4 * MIN_POINTS or np.all(x == x[0]):
            continue
        d = fit(x, "gennorm").dist
        y = np.sort(x)
        ref = _exact_distances(y, d)
        got = gof.distances(gof.Sample(y, None), d, None)
        for k in ref:
            both_inf = np.isinf(ref[k]) and np.isinf(got[k])
            assert both_inf or got[k] == pytest.approx(ref[k], rel=1e-9), (name, k)
        checked += 1
    assert checked >= 5
