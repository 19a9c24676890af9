"""Student-t maximum likelihood: L-BFGS-B on (log df, log scale, loc) with analytic gradients."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special as sc

from gradstats.arrays import (
    SUBSAMPLE,
    ConstantSample,
    array_namespace,
    central_moments,
    chunked_sum,
    median,
    subsample,
)

DF_BOUNDS = (0.05, 1.0e4)
"""StudentT degrees-of-freedom range; df at the upper bound means Normal-like tails."""


def _t_loglik_grad(x: Any, nu: float, mu: float, sigma: float) -> tuple[float, np.ndarray]:
    """Student-t log-likelihood and its gradient in (log nu, log sigma, mu), one pass."""
    n = len(x)
    xp = array_namespace(x)

    def fn(c: Any) -> tuple:
        z = (c - mu) / sigma
        z2 = z * z
        u = 1.0 + z2 / nu
        return xp.log(u).sum(), (z2 / u).sum(), (z / u).sum()

    s_logu, s_z2u, s_zu = chunked_sum(x, fn, 3)
    const = sc.gammaln((nu + 1) / 2) - sc.gammaln(nu / 2) - 0.5 * math.log(nu * math.pi) - math.log(sigma)
    ll = n * const - 0.5 * (nu + 1) * s_logu
    d_nu = (n * (0.5 * sc.digamma((nu + 1) / 2) - 0.5 * sc.digamma(nu / 2) - 0.5 / nu)
            - 0.5 * s_logu + (nu + 1) / (2 * nu * nu) * s_z2u)
    d_logsigma = -n + (nu + 1) / nu * s_z2u
    d_mu = (nu + 1) / (nu * sigma) * s_zu
    return ll, np.array([nu * d_nu, d_logsigma, d_mu])


def _t_optimize(x: Any, nu0: float, mu0: float, sigma0: float, fit_loc: bool,
                tol: float) -> tuple[float, float, float, float, bool]:
    n = len(x)

    def unpack(th: np.ndarray) -> tuple[float, float, float]:
        return math.exp(th[0]), (mu0 + th[2] * sigma0) if fit_loc else mu0, sigma0 * math.exp(th[1])

    def objective(th: np.ndarray) -> tuple[float, np.ndarray]:
        nu, mu, sigma = unpack(th)
        ll, grad = _t_loglik_grad(x, nu, mu, sigma)
        grad = grad * np.array([1.0, 1.0, sigma0])
        return -ll / n, -(grad if fit_loc else grad[:2]) / n

    th0 = np.array([math.log(nu0), 0.0, 0.0] if fit_loc else [math.log(nu0), 0.0])
    bounds = [(math.log(DF_BOUNDS[0]), math.log(DF_BOUNDS[1])), (-30.0, 30.0)]
    bounds += [(-1e6, 1e6)] if fit_loc else []
    res = scipy.optimize.minimize(objective, th0, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options={"ftol": tol, "gtol": tol, "maxiter": 500})
    nu, mu, sigma = unpack(res.x)
    return nu, mu, sigma, -res.fun * n, bool(res.success)


def fit_t(x: Any, loc: float | None, method: str) -> tuple[dict[str, float], float, list[str], dict]:
    """Student-t estimate of a prepared vector: (params, log-likelihood, flags, {}).

    Start: df from the excess kurtosis (6 / (df - 4)), scale from E|x - mu|; then L-BFGS-B on
    (log df, log scale, loc), first on a subsample for large inputs. Raises `ConstantSample`.
    """
    n = len(x)
    fit_loc = loc is None
    mu0 = median(x) if fit_loc else float(loc)
    mom = central_moments(x, mu0)
    if mom.max_abs == 0:
        raise ConstantSample(mu0)
    var = mom.m2 - (mom.mean**2 if fit_loc else 0.0)
    kurt = (mom.m4 / mom.m2**2) - 3.0 if mom.m2 > 0 else 0.0
    nu0 = min(max(4.0 + 6.0 / kurt, DF_BOUNDS[0]), 100.0) if kurt > 0.06 else 100.0
    if method == "moments":
        scale = math.sqrt(var * (nu0 - 2) / nu0) if nu0 > 2 else math.sqrt(var)
        return {"df": nu0, "loc": mu0 + (mom.mean if fit_loc else 0.0), "scale": scale}, math.nan, [], {}
    sigma0 = mom.abs_mean if mom.abs_mean > 0 else math.sqrt(var)
    flags: list[str] = []
    if n > 4 * SUBSAMPLE:
        nu0, mu0, sigma0, _, _ = _t_optimize(subsample(x, SUBSAMPLE, seed=1), min(nu0, 30.0), mu0, sigma0,
                                             fit_loc, tol=1e-8)
    nu, mu, sigma, ll, ok = _t_optimize(x, min(nu0, 30.0), mu0, sigma0, fit_loc, tol=1e-12)
    if nu >= DF_BOUNDS[1] * 0.999:
        flags.append(f"df_at_upper_bound: df hit {DF_BOUNDS[1]:g} (Normal-like tails)")
    if nu <= DF_BOUNDS[0] * 1.001:
        flags.append(f"df_at_lower_bound: df hit {DF_BOUNDS[0]:g} (extremely heavy tails)")
    if not ok:
        flags.append("not_converged: L-BFGS-B did not report convergence for StudentT")
    return {"df": nu, "loc": mu, "scale": sigma}, ll, flags, {}
