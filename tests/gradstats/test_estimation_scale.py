"""`fit` at the ends of the float range (issue 15 item 1): x * 2^k for |k| up to 1000 was an
OverflowError (gennorm, t at 1e200) or a ZeroDivisionError (gennorm at 1e-300); now the fit of
x / 2^e scaled back, loglik adjusted by -n e ln 2."""

import math

import numpy as np
import pytest
import torch

from gradstats import fit

FAMILIES = ["normal", "laplace", "gennorm", "t"]


def sample(n=4000, seed=0):
    return np.random.default_rng(seed).laplace(size=n)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [-1000, -300, -70, 70, 300, 664, 1000])
def test_fit_is_scale_equivariant_over_the_float64_range(family, k):
    x = sample()
    ref, r = fit(x, family), fit(np.ldexp(x, k), family)
    assert r.dist is not None and r.flags == ref.flags and r.n == ref.n and r.k == ref.k
    for p, v in ref.params.items():
        want = math.ldexp(v, k) if p in ("loc", "scale") else v
        assert r.params[p] == pytest.approx(want, rel=1e-8, abs=1e-8 * math.ldexp(ref.params["scale"], k))
    assert r.loglik == pytest.approx(ref.loglik - x.size * k * math.log(2.0), rel=1e-12)
    assert r.aic == pytest.approx(2 * r.k - 2 * r.loglik) and r.bic == pytest.approx(
        r.k * math.log(r.n) - 2 * r.loglik)
    # the scaled-back loglik is the loglik of x under the scaled-back family
    y = np.ldexp(x, k)
    assert float(np.sum(r.dist.logpdf(y))) == pytest.approx(r.loglik, rel=1e-9)


def test_ordinary_samples_are_fitted_as_before(monkeypatch):
    # max |x| inside [2^-64, 2^64]: the unscaled path, so the very numbers of before the fix
    from gradstats import estimation

    def refuse(*args):
        raise AssertionError("an ordinary sample was rescaled")

    monkeypatch.setattr(estimation, "_fit_scaled", refuse)
    x = sample()
    for k in (-66, -30, 0, 30, 61):
        for family in FAMILIES:
            assert fit(np.ldexp(x, k), family).dist is not None
    with pytest.raises(AssertionError, match="rescaled"):
        fit(np.ldexp(x, 70), "normal")


def test_fixed_loc_zero_inflated_constant_and_torch_at_extreme_scales():
    x = sample()
    x[:400] = 0.0
    y = np.ldexp(x, 700)
    r = fit(y, "gennorm", loc=0.0)
    assert r.params["loc"] == 0.0 and r.k == 2
    ref = fit(x, "gennorm", loc=0.0)
    assert r.params["scale"] == pytest.approx(math.ldexp(ref.params["scale"], 700), rel=1e-8)
    zi, zi_ref = fit(y, "zi-gennorm"), fit(x, "zi-gennorm")
    assert zi.params["pi"] == zi_ref.params["pi"] == 0.1
    assert zi.loglik == pytest.approx(zi_ref.loglik - 3600 * 700 * math.log(2.0), rel=1e-12)
    c = fit(np.full(100, 1e200), "gennorm")
    assert c.dist is None and c.params["loc"] == 1e200 and "equal 1e+200 " in c.flags[0]
    t = fit(torch.from_numpy(y), "gennorm")
    assert t.params["beta"] == pytest.approx(fit(y, "gennorm").params["beta"], rel=1e-6)
    f32 = np.ldexp(sample().astype(np.float32), -140)  # float32 subnormals
    r32 = fit(torch.from_numpy(f32), "gennorm")
    assert r32.params["scale"] == pytest.approx(math.ldexp(fit(sample(), "gennorm").params["scale"], -140),
                                                rel=1e-2)
