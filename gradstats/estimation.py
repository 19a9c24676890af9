"""One family fitted to one sample: the `Fit` record and the `fit` function behind `gradstats.fit`.

`fit` prepares the sample (`arrays.prepare`: flatten, NaN/Inf policy), asks the family for its
estimate (`Family.estimate`), and adds what every fit reports: the flags (small sample, ties at the
loc, degenerate samples), the log-likelihood, AIC and BIC. ZeroInflated(base) takes pi = fraction
of exact zeros and fits the base on the non-zeros. `bootstrap_beta` resamples GenNorm fits.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradstats.arrays import ConstantSample, count_equal, f64_chunks, is_torch, parse_loc, prepare
from gradstats.families import FAMILIES, Family, ZeroInflated, family_name

SMALL_N = 30
"""Samples smaller than this are fitted but flagged as unreliable."""


@dataclass
class Fit:
    """A fitted family: parameters by name, log-likelihood and information criteria.

    `loglik` is the maximized sum of `dist.logpdf(x)`; `aic = 2k - 2 loglik`,
    `bic = k ln n - 2 loglik` with `k` the number of fitted parameters (a fixed loc is not
    counted). `dist` is the frozen family, or None when the fit is degenerate (then `flags` says
    why and the undetermined parameters are NaN). `se` holds asymptotic standard errors where
    they are cheap (GenNorm: `beta` from the curvature of the profile log-likelihood).
    """

    family: str
    params: dict[str, float]
    loglik: float
    aic: float
    bic: float
    n: int
    seconds: float
    flags: tuple[str, ...] = ()
    dist: Family | None = None
    k: int = 0
    method: str = "mle"
    n_omitted: int = 0
    se: dict[str, float] = field(default_factory=dict)




def _loglik(x: Any, dist: Family) -> float:
    """sum dist.logpdf(x) over float64 chunks (host evaluation with scipy)."""
    tot = 0.0
    for c in f64_chunks(x):
        if is_torch(c):
            c = c.cpu().numpy()
        tot += float(np.sum(dist.logpdf(c)))
    return tot


def _degenerate_fit(name: str, n: int, t0: float, flags: list[str], n_omitted: int, method: str,
                    loc_value: float = math.nan) -> Fit:
    base = name.removeprefix("zi-")
    params = {p: math.nan for p in FAMILIES[base].param_names}
    if not math.isnan(loc_value):
        params["loc"] = loc_value
        params["scale"] = 0.0
    if name.startswith("zi-"):
        params = {"pi": math.nan, **params}
    return Fit(name, params, math.nan, math.nan, math.nan, n, time.perf_counter() - t0, tuple(flags), None,
               0, method, n_omitted)


def fit(x: Any, family: str = "gennorm", method: str = "mle", loc: str | float = "fit",
        nan_policy: str = "raise", min_shape_n: int = 0) -> Fit:
    """Fit one family to the entries of x (numpy array or torch tensor, any shape, any float dtype).

    family: 'normal', 'laplace', 'gennorm', 't', or 'zi-<family>' (point mass at 0 + family).
    method: 'mle' (maximum likelihood) or 'moments' (method of moments; loglik evaluated at it).
    loc: 'fit' to estimate the location, or a number to hold it fixed (0.0 for gradients).
    nan_policy: 'raise' (ValueError naming the NaN/Inf count) or 'omit' (dropped, counted, flagged).
    Degenerate samples (empty, constant, all zero) give a Fit with `dist=None` and a flag instead of
    an exception; samples under `SMALL_N` entries and shapes on their search bounds are flagged.
    min_shape_n: a family with a shape parameter is not fitted to fewer entries (flag `too_small`,
    parameters NaN); the fit tables pass `families.MIN_SHAPE_N`, 0 fits any size.
    """
    t0 = time.perf_counter()
    name = family_name(family)
    if method not in ("mle", "moments"):
        raise ValueError(f"method must be 'mle' or 'moments', got {method!r}")
    loc_value = parse_loc(loc)
    v, n_omitted = prepare(x, nan_policy)
    flags: list[str] = [f"omitted_nonfinite: {n_omitted} NaN/Inf entries dropped"] if n_omitted else []
    n = len(v)
    if n == 0:
        return _degenerate_fit(name, 0, t0, [*flags, "empty: no finite entries to fit"], n_omitted, method)
    if name.startswith("zi-"):
        return _fit_zero_inflated(v, name, method, loc, flags, n_omitted, t0, min_shape_n)
    reason = FAMILIES[name].too_few(n, min_shape_n)
    if reason:
        return _degenerate_fit(name, n, t0, [*flags, reason], n_omitted, method)
    e = _scale_exponent(v)
    if e:
        return _fit_scaled(v, e, name, method, loc_value, flags, n_omitted, t0)
    if n < SMALL_N:
        flags.append(f"small_sample: n={n} < {SMALL_N}, estimates are unreliable")
    try:
        e = FAMILIES[name].estimate(v, loc_value, method)
    except ConstantSample as d:
        return _degenerate_fit(name, n, t0, [*flags, f"constant: all {n} entries equal {d.value:.6g} "
                               "(a point mass; no scale can be fitted)"], n_omitted, method, d.value)
    params, ll, extra, se = e.params, e.loglik, e.flags, e.se
    flags.extend(extra)
    ties = count_equal(v, params["loc"])
    if ties >= max(2, 0.01 * n):
        flags.append(f"ties_at_loc: {ties} entries ({100 * ties / n:.1f}%) equal the loc {params['loc']:.6g} "
                     f"exactly; a continuous density cannot describe that atom (try zi-{name})")
    dist = FAMILIES[name](**params)
    if method == "moments" or not math.isfinite(ll):
        ll = _loglik(v, dist)
    k = dist.n_params - (0 if loc_value is None else 1)
    ll = float(ll)
    return Fit(name, dist.params, ll, 2 * k - 2 * ll, k * math.log(n) - 2 * ll, n, time.perf_counter() - t0,
               tuple(flags), dist, k, method, n_omitted, se)


SCALE_EXPONENT_RANGE = 64
"""Samples with max |x| in [2^-64, 2^64] are fitted as they are; others as x / 2^e (`_fit_scaled`)."""


def _scale_exponent(v: Any) -> int:
    """0 when max |v| is in [2^-64, 2^64] (or v is all zero), else the exponent e of max |v|
    (frexp: max |v| / 2^e in [1/2, 1))."""
    if is_torch(v):
        mn, mx = (float(t) for t in sys.modules["torch"].aminmax(v))
    else:
        mn, mx = float(v.min()), float(v.max())
    m = max(-mn, mx)
    if m == 0 or 2.0**-SCALE_EXPONENT_RANGE <= m <= 2.0**SCALE_EXPONENT_RANGE:
        return 0
    return math.frexp(m)[1]


def _fit_scaled(v: Any, e: int, name: str, method: str, loc_value: float | None, flags: list[str],
                n_omitted: int, t0: float) -> Fit:
    """The fit of x from that of y = x / 2^e (exact: a power of two): loc and scale times 2^e,
    shapes as they are, loglik(x) = loglik(y) - n e ln 2 (the density of x is that of y over 2^e).

    Samples near float64's ends overflow or underflow the solvers' sums of powers (|x|^beta at
    x ~ 1e200); every family here is a location-scale family, so fitting y loses nothing.
    """
    if is_torch(v):
        w = v.double()
        for part in (e // 2, e - e // 2):  # 2^e as a Python float overflows past 2^1023
            w = w * 2.0**-part
        y = w.to(v.dtype)
    else:
        y = np.ldexp(v, -e)
    inner = fit(y, name, method, "fit" if loc_value is None else math.ldexp(loc_value, -e))

    def back(p: str, value: float) -> float:
        return math.ldexp(value, e) if p in ("loc", "scale") and math.isfinite(value) else value

    params = {p: back(p, val) for p, val in inner.params.items()}
    if "loc" in params:  # the flags quote the loc (ties, a constant sample): in units of x
        yl, xl = f"{inner.params['loc']:.6g}", f"{params['loc']:.6g}"
        flags = flags + [f.replace(f"equal {yl} ", f"equal {xl} ").replace(f"the loc {yl} ", f"the loc {xl} ")
                         for f in inner.flags]
    else:
        flags = flags + list(inner.flags)
    dist = None if inner.dist is None else FAMILIES[name](**params)
    n, k = inner.n, inner.k
    ll = inner.loglik - n * e * math.log(2.0)
    se = {p: back(p, val) for p, val in inner.se.items()}
    if dist is None:
        return Fit(name, params, math.nan, math.nan, math.nan, n, time.perf_counter() - t0,
                   tuple(flags), None, 0, method, n_omitted, se)
    return Fit(name, dist.params, ll, 2 * k - 2 * ll, k * math.log(n) - 2 * ll, n, time.perf_counter() - t0,
               tuple(flags), dist, k, method, n_omitted, se)


def _fit_zero_inflated(v: Any, name: str, method: str, loc: str | float, flags: list[str],
                       n_omitted: int, t0: float, min_shape_n: int = 0) -> Fit:
    nonzero = v[v != 0]
    n_zero = len(v) - len(nonzero)
    base = (fit(nonzero, name.removeprefix("zi-"), method=method, loc=loc, min_shape_n=min_shape_n)
            if len(nonzero) else None)
    return zero_inflate(name, base, len(v), n_zero, flags, n_omitted, t0, method)


def zero_inflate(name: str, base: Fit | None, n: int, n_zero: int, flags: Sequence[str] = (),
                 n_omitted: int = 0, t0: float | None = None, method: str = "mle") -> Fit:
    """The `name` = 'zi-<family>' fit of n entries of which n_zero are exactly 0, from the base family's
    fit to the n - n_zero others (None when there are none): pi = n_zero / n and
    loglik = base loglik + n_zero log pi + (n - n_zero) log(1 - pi).

    A sample without zeros has pi = 0 and the base fit of the whole sample, so `fit_all` hands the
    plain family's fit here instead of fitting it twice.
    """
    t0 = time.perf_counter() if t0 is None else t0
    pi = n_zero / n
    if base is None:
        fitted = _degenerate_fit(name, n, t0, [*flags, f"all_zero: all {n} entries are exactly 0 (pi = 1, "
                                 "no continuous part to fit)"], n_omitted, method)
        fitted.params["pi"] = 1.0
        return fitted
    flags = list(flags) + list(base.flags)
    if base.dist is None:
        fitted = _degenerate_fit(name, n, t0, flags, n_omitted, method)
        fitted.params.update(base.params, pi=pi)
        return fitted
    dist = ZeroInflated(base.dist, pi)
    ll = base.loglik + (n_zero * math.log(pi) if n_zero else 0.0) + (n - n_zero) * math.log1p(-pi)
    k = base.k + 1
    return Fit(name, dist.params, ll, 2 * k - 2 * ll, k * math.log(n) - 2 * ll, n, time.perf_counter() - t0,
               tuple(flags), dist, k, method, n_omitted, dict(base.se))


def bootstrap_beta(x: Any, n_boot: int = 50, loc: str | float = "fit", max_n: int = 200_000,
                   seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for the GenNorm beta (Efron & Tibshirani 1993).

    Each replicate refits GenNorm on a resample with replacement. Above `max_n` entries the
    m-out-of-n bootstrap is used (resamples of m = max_n, deviations from the m-sample estimate
    shrunk by sqrt(m / n)), so the interval still describes the full-size estimate.
    """
    v, _ = prepare(x, "omit")
    n = len(v)
    m = min(n, max_n)
    rng = np.random.default_rng(seed)
    full = fit(v, "gennorm", loc=loc).params["beta"]
    reps = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, m)
        if is_torch(v):
            idx = sys.modules["torch"].as_tensor(idx, device=v.device)
        reps.append(fit(v[idx], "gennorm", loc=loc).params["beta"])
    dev = (np.asarray(reps) - (np.mean(reps) if m < n else full)) * math.sqrt(m / n)
    a = (1 - level) / 2
    lo, hi = np.quantile(dev, [a, 1 - a])
    return float(full + lo), float(full + hi)
