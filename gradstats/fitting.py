"""Fast maximum-likelihood fits of the families in `gradstats.families`, one tensor or a whole capture.

- Normal and Laplace: closed form (mean / standard deviation; median / mean absolute deviation).
- GenNorm: moment-ratio start (E|x - mu| / sqrt(E (x - mu)^2) = Gamma(2/b) / sqrt(Gamma(1/b) Gamma(3/b))
  inverted for b), then safeguarded Newton on the profile log-likelihood in beta, with the scale in
  closed form given beta (Varanasi & Aazhang 1989, "Parametric generalized Gaussian density
  estimation"): s^b = (b / n) sum |x - mu|^b. A free loc is Fisher-scored in the same passes for
  b >= 1; for b < 1 (a cusp at every data point) it is found by a bracketed Brent search.
- StudentT: L-BFGS-B on (log df, log scale, loc) with analytic gradients.
- ZeroInflated: pi = fraction of exact zeros, the family fitted on the non-zeros.

Every pass over the data is a chunked reduction with float64 accumulators, so float32 / float16 /
bfloat16 input is never copied whole to float64, and torch tensors (CUDA included) are reduced on
their own device; only scalars come back to the host. Inputs above 4 x 65536 entries start from a
random subsample of 65536 (median, moment ratio, warm Newton); float32 ones then iterate with
float32 terms (a Taylor model of the profile likelihood in beta from one pass) and finish with one
float64 pass, which gives the reported log-likelihood: two passes over the data for a fixed loc.
"""
from __future__ import annotations

import fnmatch
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.special as sc

from gradstats.families import (
    FAMILIES,
    Family,
    ZeroInflated,
    family_name,
)

BETA_BOUNDS = (0.05, 50.0)
"""GenNorm shape range searched; a fit that ends on a bound is flagged (heavy tails / near uniform)."""
DF_BOUNDS = (0.05, 1.0e4)
"""StudentT degrees-of-freedom range; df at the upper bound means Normal-like tails."""
SMALL_N = 30
"""Samples smaller than this are fitted but flagged as unreliable."""
CHUNK = 1 << 18
"""Entries per float64 chunk in the reductions (2 MiB on the host)."""
JOINT_MIN_BETA = 1.0
"""From this shape up a free loc is updated by Fisher scoring in the same passes as beta."""
SUBSAMPLE = 1 << 16
"""Size of the random subsample used for the warm start of iterative fits on large inputs."""


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


# ---------------------------------------------------------------------------------------------
# input handling and chunked reductions


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _xp(x: Any) -> Any:
    return sys.modules["torch"] if _is_torch(x) else np


def _as_vector(x: Any) -> Any:
    """x as a 1-D numpy array or torch tensor in its own dtype (a view where possible)."""
    if _is_torch(x):
        if x.is_complex() or not (x.is_floating_point() or x.dtype.is_signed or x.dtype == _xp(x).bool):
            raise ValueError(f"fit: expected a real tensor, got dtype {x.dtype}")
        x = x.detach().reshape(-1)
        return x if x.is_floating_point() else x.double()
    x = np.asarray(x)
    if x.dtype.kind == "c" or x.dtype.kind not in "fiub":
        raise ValueError(f"fit: expected real numbers, got dtype {x.dtype}")
    x = x.reshape(-1)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _f64_chunks(x: Any, chunk: int = CHUNK) -> Iterable[Any]:
    torch_in = _is_torch(x)
    size = chunk * 16 if torch_in and x.device.type != "cpu" else chunk
    for i in range(0, len(x), size):
        c = x[i : i + size]
        yield c.double() if torch_in else c.astype(np.float64, copy=False)


def _reduce(x: Any, fn: Callable[[Any], tuple], k: int) -> list[float]:
    """Sum fn(chunk) (a k-tuple of scalars) over float64 chunks of x; one host sync at the end."""
    tot: list[Any] = [0.0] * k
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for c in _f64_chunks(x):
            for j, v in enumerate(fn(c)):
                tot[j] = tot[j] + v
    return [float(t) for t in tot]


def _low_precision(x: Any) -> bool:
    """True for float32 / float16 / bfloat16 data, which the fast passes may reduce in float32."""
    if _is_torch(x):
        torch = sys.modules["torch"]
        return x.dtype in (torch.float32, torch.float16, torch.bfloat16)
    return x.dtype in (np.float32, np.float16)


def _reduce_f32(x: Any, fn: Callable[[Any], tuple], k: int) -> list[float]:
    """Like `_reduce` with float32 chunks; fn must return float64 sums (see `_sum64`)."""
    torch_in = _is_torch(x)
    size = CHUNK * 16 if torch_in and x.device.type != "cpu" else CHUNK
    tot: list[Any] = [0.0] * k
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for i in range(0, len(x), size):
            c = x[i : i + size]
            for j, v in enumerate(fn(c.float() if torch_in else c.astype(np.float32, copy=False))):
                tot[j] = tot[j] + v
    return [float(t) for t in tot]


def _sum64(a: Any) -> Any:
    """Sum with a float64 accumulator."""
    return a.sum(dtype=sys.modules["torch"].float64) if _is_torch(a) else a.sum(dtype=np.float64)


def _count_nonfinite(x: Any) -> tuple[int, int]:
    """(number of NaN, number of +-Inf) in x, chunked in its own dtype."""
    xp = _xp(x)
    bad = 0
    for i in range(0, len(x), CHUNK * 4):
        c = x[i : i + CHUNK * 4]
        bad = bad + (~xp.isfinite(c)).sum()
    if int(bad) == 0:
        return 0, 0
    n_nan = int(xp.isnan(x).sum())
    return n_nan, int(bad) - n_nan


def prepare(x: Any, nan_policy: str = "raise") -> tuple[Any, int]:
    """Flatten x and check it is finite: (vector, number of non-finite entries omitted).

    nan_policy "raise" raises ValueError naming the NaN and Inf counts; "omit" drops them and
    reports the count (the fits carry it in `n_omitted` and a flag).
    """
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    v = _as_vector(x)
    # fast path: a float64 sum is finite iff every entry is (entries below 1e300 cannot overflow it)
    with np.errstate(invalid="ignore", over="ignore"):
        total = v.sum(dtype=sys.modules["torch"].float64) if _is_torch(v) else v.sum(dtype=np.float64)
    if math.isfinite(float(total)):
        return v, 0
    n_nan, n_inf = _count_nonfinite(v)
    if n_nan + n_inf == 0:
        return v, 0
    if nan_policy == "raise":
        raise ValueError(f"input contains {n_nan} NaN and {n_inf} Inf values out of {len(v)} "
                         "(pass nan_policy='omit' to drop them)")
    return v[_xp(v).isfinite(v)], n_nan + n_inf


def _count_equal(x: Any, value: float) -> int:
    """Number of entries exactly equal to value (chunked, in x's own dtype)."""
    total = 0
    for i in range(0, len(x), CHUNK * 4):
        total += int((x[i : i + CHUNK * 4] == value).sum())
    return total


def _median(x: Any) -> float:
    if _is_torch(x):
        return float(x.median())
    return float(np.median(x))


def _subsample(x: Any, m: int, seed: int = 0) -> Any:
    """m entries of x drawn uniformly with replacement, as float64, on x's device, sorted by index."""
    idx = np.sort(np.random.default_rng(seed).integers(0, len(x), m))
    if _is_torch(x):
        torch = sys.modules["torch"]
        return x[torch.as_tensor(idx, device=x.device)].double()
    return x[idx].astype(np.float64)


@dataclass
class _Moments:
    """Central sums around `center`: n, mean offset, E|d|, E d^2, E d^4, max |d|, zeros of d."""

    n: int
    center: float
    mean: float
    abs_mean: float
    m2: float
    m4: float
    max_abs: float
    n_zero: int


def _moments(x: Any, center: float) -> _Moments:
    def fn(c: Any) -> tuple:
        d = c - center
        a = abs(d)
        d2 = d * d
        return d.sum(), a.sum(), d2.sum(), (d2 * d2).sum(), (a == 0).sum()

    n = len(x)
    s1, sa, s2, s4, nz = _reduce(x, fn, 5)
    mx = float(abs(x.max().double() - center)) if _is_torch(x) else float(abs(np.float64(x.max()) - center))
    mn = float(abs(x.min().double() - center)) if _is_torch(x) else float(abs(np.float64(x.min()) - center))
    return _Moments(n, center, s1 / n, sa / n, s2 / n, s4 / n, max(mx, mn), int(nz))


# ---------------------------------------------------------------------------------------------
# GenNorm


def gennorm_moment_ratio(beta: float | np.ndarray) -> float | np.ndarray:
    """E|X| / sqrt(E X^2) of GenNorm(beta): Gamma(2/b) / sqrt(Gamma(1/b) Gamma(3/b)).

    Increases from 0 (b -> 0) through 1/sqrt 2 (Laplace) and sqrt(2/pi) (Normal) to sqrt(3)/2
    (b -> inf, uniform).
    """
    b = np.asarray(beta, dtype=np.float64)
    return np.exp(sc.gammaln(2 / b) - 0.5 * (sc.gammaln(1 / b) + sc.gammaln(3 / b)))


def gennorm_beta_from_ratio(ratio: float) -> float:
    """Invert `gennorm_moment_ratio` for beta, clamped to `BETA_BOUNDS`."""
    lo, hi = BETA_BOUNDS
    if not np.isfinite(ratio) or ratio <= gennorm_moment_ratio(lo):
        return lo
    if ratio >= gennorm_moment_ratio(hi):
        return hi
    return float(np.exp(scipy.optimize.brentq(lambda t: gennorm_moment_ratio(np.exp(t)) - ratio,
                                              np.log(lo), np.log(hi), xtol=1e-12)))


def _gennorm_profile(beta: float, t0: float, n: int, logc: float) -> float:
    """Profile log-likelihood per entry at shape beta, with s^b = b T0 / n in units of c."""
    return (math.log(beta) - math.log(2.0) - sc.gammaln(1 / beta) - logc
            - math.log(beta * t0 / n) / beta - 1 / beta)


def _gennorm_grad_hess(beta: float, t0: float, t1: float, t2: float, n: int) -> tuple[float, float]:
    """First and second derivative in beta of `_gennorm_profile`.

    With T_j = sum a^b (log a)^j, m = T1/T0, v = T2/T0 - m^2 and L = log(b T0 / n):
    g = 1/b + psi(1/b)/b^2 + L/b^2 - m/b.
    """
    ib = 1.0 / beta
    big_l = math.log(beta * t0 / n)
    m = t1 / t0
    v = max(t2 / t0 - m * m, 0.0)
    psi = float(sc.digamma(ib))
    g = ib + psi * ib**2 + big_l * ib**2 - m * ib
    h = (-(ib**2) - float(sc.polygamma(1, ib)) * ib**4 - 2 * psi * ib**3
         + (ib + m) * ib**2 - 2 * big_l * ib**3 + m * ib**2 - v * ib)
    return g, h


_TINY = 1e-300  # exact zeros of |x - mu| are clamped here: tiny^beta is below 1e-13 for beta >= 0.05


def _clamp_min_(d: Any, v: float) -> Any:
    if _is_torch(d):
        return d.clamp_(min=v)
    return np.maximum(d, v, out=d)


def _log_abs_dev(ch: Any, mu: float, c: float) -> Any:
    """log(max(|ch - mu| / c, 1e-300)) in a new float64 buffer."""
    xp = _xp(ch)
    d = ch - mu
    xp.abs(d, out=d)
    d *= 1.0 / c
    _clamp_min_(d, _TINY)
    return xp.log(d, out=d)


def _log_abs_dev_zeroed(ch: Any, mu: float, c: float) -> tuple[Any, Any]:
    """(log(|ch - mu| / c) in ch's precision with 0 at exact zeros, the mask of those zeros).

    A zero's term a^b = exp(b * 0) = 1 must be subtracted by the caller (one count per zero)
    instead of clamping, which float32 cannot do (1e-300 underflows)."""
    xp = _xp(ch)
    d = ch - mu
    xp.abs(d, out=d)
    d *= 1.0 / c
    zero = d == 0
    if zero.any():
        d = xp.where(zero, 1.0, d)
    return xp.log(d, out=d), zero


def _gennorm_sums(x: Any, mu: float, beta: float, c: float, fit_loc: bool, exact: bool = True) -> list[float]:
    """One pass: T0, T1, T2 (sums of a^b, a^b log a, a^b log^2 a for a = |x - mu| / c) and, for a
    free loc, S = sum sign(x - mu) a^(b - 1) (the loc score up to a factor).

    exact=False on float32/16 data computes the terms in float32 (float64 sums): about half the
    cost, relative error ~1e-7, good for the Newton iterations but not for the reported likelihood.
    """
    xp = _xp(x)
    if not exact and _low_precision(x):

        def fast(ch: Any) -> tuple:
            lg, zero = _log_abs_dev_zeroed(ch, mu, c)
            p = lg * beta
            xp.exp(p, out=p)
            t0 = _sum64(p) - zero.sum()
            if fit_loc:
                q = lg * (beta - 1.0)
                xp.exp(q, out=q)
                score = _sum64(q * xp.sign(ch - mu))
            p *= lg
            t1 = _sum64(p)
            p *= lg
            t2 = _sum64(p)
            return (t0, t1, t2, score) if fit_loc else (t0, t1, t2)

        return _reduce_f32(x, fast, 4 if fit_loc else 3)

    def fn(ch: Any) -> tuple:
        lg = _log_abs_dev(ch, mu, c)
        p = lg * beta
        xp.exp(p, out=p)
        t0 = p.sum()
        if fit_loc:
            q = lg * (beta - 1.0)
            xp.exp(q, out=q)
            score = (q * xp.sign(ch - mu)).sum()
        p *= lg
        t1 = p.sum()
        p *= lg
        t2 = p.sum()
        return (t0, t1, t2, score) if fit_loc else (t0, t1, t2)

    return _reduce(x, fn, 4 if fit_loc else 3)


@dataclass
class _GNState:
    beta: float
    mu: float
    sums: list[float]
    ll: float  # per entry
    g: float
    h: float
    passes: int
    converged: bool


def _gennorm_scoring_step(beta: float, sums: list[float], n: int, c: float) -> float:
    """Fisher-scoring step for the loc: score / (n I) with the GenNorm loc information
    I = b^2 Gamma(2 - 1/b) / (s^2 Gamma(1/b)) (finite for b > 1/2); the expected information
    stands in for the observed one, which is singular at the data points for b < 2."""
    s_beta = beta * sums[0] / n  # (s / c)^b
    return (c * sums[3] * s_beta ** (2 / beta - 1)
            * math.exp(sc.gammaln(1 / beta) - sc.gammaln(2 - 1 / beta)) / (n * beta))


_TAYLOR_ORDER = 4


def _gennorm_taylor_pass(x: Any, beta0: float, mu: float, c: float, score: bool = False,
                         exact: bool = False) -> tuple[float | None, list[float]]:
    """One pass (float32 terms unless exact) that moves beta to the profile-likelihood maximum, or None.

    It collects M_k = sum a^b0 (log a)^k, k = 0..4, and expands T_j(b0 + d) = sum_k d^k / k!
    M_{k+j}; Newton on that model needs no further passes. The expansion error is about
    (d log a)^5 / 5!, negligible inside the trust region |d| <= 0.03 b0 used here (the start
    comes from a 65536-entry subsample, about 0.5 % off); outside it None is returned and the
    caller iterates pass by pass. Any residual is caught by the float64 pass that follows.
    Also returns [T0, T1, T2, S] at beta0 (S, the loc score of
    `_gennorm_sums`, only with score=True).
    """
    xp = _xp(x)
    order = _TAYLOR_ORDER

    def fn(ch: Any) -> tuple:
        lg, zero = _log_abs_dev_zeroed(ch, mu, c)
        n_zero = zero.sum()
        p = lg * beta0
        xp.exp(p, out=p)
        # chunk sums in the working precision (pairwise, ~1e-7 relative on a 65536-entry chunk)
        # are accurate enough for the model; the chunks are accumulated in float64
        out = [float(p.sum()) - float(n_zero)]
        if score:
            q = lg * (beta0 - 1.0)
            xp.exp(q, out=q)
            s = float((q * xp.sign(ch - mu)).sum())
        for _ in range(order):
            p *= lg
            out.append(float(p.sum()))
        return (*out, s) if score else tuple(out)

    k = order + 2 if score else order + 1
    m = _reduce(x, fn, k) if exact or not _low_precision(x) else _reduce_f32(x, fn, k)
    sums = [m[0], m[1], m[2], m[-1] if score else math.nan]
    n = len(x)
    fact = [math.factorial(k) for k in range(order + 1)]

    def t(j: int, d: float) -> float:
        return sum(d**k / fact[k] * m[k + j] for k in range(order + 1 - j))

    b = beta0
    for _ in range(60):
        d = b - beta0
        t0 = t(0, d)
        if t0 <= 0:
            return None, sums
        g, h = _gennorm_grad_hess(b, t0, t(1, d), t(2, d), n)
        if h >= 0:
            return None, sums
        step = -g / h
        b += step
        if not abs(b - beta0) <= 0.03 * beta0 or not BETA_BOUNDS[0] < b < BETA_BOUNDS[1]:
            return None, sums
        if abs(step) <= 1e-12 * b:
            return b, sums
    return None, sums


def _gennorm_loc_info(beta: float, sums: list[float], n: int, c: float) -> float:
    """Fisher information per entry for the loc, I = b^2 Gamma(2 - 1/b) / (s^2 Gamma(1/b)) (b > 1/2)."""
    if beta <= 0.5:
        return 0.0
    s = c * (beta * sums[0] / n) ** (1 / beta)
    return beta**2 * math.exp(sc.gammaln(2 - 1 / beta) - sc.gammaln(1 / beta)) / s**2


def _gennorm_newton(x: Any, beta: float, mu: float, c: float, fit_loc: bool, scale_ref: float,
                    tol: float, max_iter: int = 100, exact: bool = True) -> _GNState:
    """Safeguarded Newton ascent of the GenNorm profile likelihood in beta (and loc if fitted).

    Each iteration is one pass (`_gennorm_sums`); a step that lowers the likelihood is halved.
    Stops when the steps are below `tol` (relative to beta and to the scale) or when the
    predicted gain of the next step is below 1e-4 nats.
    """
    n = len(x)
    logc = math.log(c)
    lo, hi = BETA_BOUNDS
    # float32 passes carry ~1e-8 relative noise in the per-entry likelihood
    slack = 1e-15 if exact or not _low_precision(x) else 1e-9
    # exact passes stop once the next step would gain < 1e-6 nats; float32 passes (a warm start
    # for the exact ones) run until the steps are below tol, with a short line search since their
    # likelihood differences drown in rounding near the optimum
    gain_tol = 1e-6 if exact else 0.0
    max_halvings = 40 if slack < 1e-12 else 6

    def evaluate(b: float, m: float) -> tuple[list[float], float]:
        s = _gennorm_sums(x, m, b, c, fit_loc, exact)
        return s, _gennorm_profile(b, s[0], n, logc)

    sums, ll = evaluate(beta, mu)
    passes, converged = 1, False
    for _ in range(max_iter):
        g, h = _gennorm_grad_hess(beta, sums[0], sums[1], sums[2], n)
        step_b = -g / h if h < 0 else math.copysign(0.5 * beta, g)
        step_b = min(max(step_b, -0.5 * beta), beta)
        new_b = min(max(beta + step_b, lo), hi)
        step_m = _gennorm_scoring_step(beta, sums, n, c) if fit_loc else 0.0
        gain = 0.5 * n * (g * g / -h + _gennorm_loc_info(beta, sums, n, c) * step_m**2) if h < 0 else math.inf
        if (abs(new_b - beta) <= tol * beta and abs(step_m) <= tol * scale_ref) or gain <= gain_tol:
            converged = True
            break
        t = 1.0
        for _ in range(max_halvings):
            b_try, m_try = beta + t * (new_b - beta), mu + t * step_m
            s_try, ll_try = evaluate(b_try, m_try)
            passes += 1
            if ll_try >= ll - slack * abs(ll):
                break
            t *= 0.5
        else:
            converged = True  # no ascent direction left at working precision
            break
        small = abs(b_try - beta) <= tol * beta and abs(m_try - mu) <= tol * scale_ref
        beta, mu, sums, ll = b_try, m_try, s_try, ll_try
        if small:
            converged = True
            break
    g, h = _gennorm_grad_hess(beta, sums[0], sums[1], sums[2], n)
    return _GNState(beta, mu, sums, ll, g, h, passes, converged)


def _gennorm_q(x: Any, mu: float, beta: float, c: float, exact: bool = True) -> float:
    """sum |(x - mu) / c|^beta in one pass (the loc objective at fixed beta); exact=False as in
    `_gennorm_sums`."""
    xp = _xp(x)
    if not exact and _low_precision(x):

        def fast(ch: Any) -> tuple:
            p, zero = _log_abs_dev_zeroed(ch, mu, c)
            p *= beta
            return (_sum64(xp.exp(p, out=p)) - zero.sum(),)

        return _reduce_f32(x, fast, 1)[0]

    def fn(ch: Any) -> tuple:
        p = _log_abs_dev(ch, mu, c)
        p *= beta
        return (xp.exp(p, out=p).sum(),)

    return _reduce(x, fn, 1)[0]


def _neighbours(x: Any, mu: float) -> list[float]:
    """The data points just below and just above mu (one pass)."""
    lo, hi = -math.inf, math.inf
    for ch in _f64_chunks(x):
        d = ch - mu
        below, above = d[d <= 0], d[d > 0]
        if len(below):
            lo = max(lo, float(below.max()))
        if len(above):
            hi = min(hi, float(above.min()))
    return [mu + v for v in (lo, hi) if math.isfinite(v)]


def _gennorm_loc_search(x: Any, beta: float, mu: float, half_width: float, c: float, xtol: float,
                        fast: bool = False) -> float:
    """Location for beta < 1, where sum |x - mu|^beta has a cusp at every data point.

    A local step sticks to the nearest cusp, so the smooth large-scale minimum is found by bounded
    Brent over [mu - h, mu + h]; then the data points on either side of it are tried as well
    (the exact maximum of the likelihood sits on a data point).
    """
    res = scipy.optimize.minimize_scalar(lambda m: _gennorm_q(x, m, beta, c, exact=not fast),
                                         method="bounded", bounds=(mu - half_width, mu + half_width),
                                         options={"xatol": xtol, "maxiter": 500})
    cands = [float(res.x), *_neighbours(x, float(res.x))]
    vals = [_gennorm_q(x, m, beta, c, exact=not fast) for m in cands]
    return cands[int(np.argmin(vals))]


_POLISH_FAR = 30.0
"""Entries farther than this many candidate-window widths from the loc enter the polish through a
Taylor series in the loc shift (terms below (1/30)^9 ~ 5e-14 of theirs are dropped)."""
_POLISH_ORDER = 8
_POLISH_MAX_CANDIDATES = 128


def _binomial_far_sums(xp: Any, d: Any, beta: float, order: int) -> np.ndarray:
    """[0, F_1, ..., F_order] with F_k = sum sign(d)^k |d|^(beta - k) (d != 0)."""
    out = np.zeros(order + 1)
    # An entry exactly at the loc lands here only when the near window is empty (w = 0); the
    # candidates are then the loc itself, e = 0, and such an entry adds |e|^b = 0 to every Q(m).
    d = d[d != 0]
    if len(d) == 0:
        return out
    inv = 1.0 / d  # sign(d)^k |d|^(b - k) = |d|^b (1 / d)^k
    p = xp.abs(d)
    xp.log(p, out=p)
    p *= beta
    xp.exp(p, out=p)
    for k in range(1, order + 1):
        p *= inv
        out[k] = float(p.sum())
    return out


def _gennorm_loc_polish(x: Any, beta: float, mu: float, w: float, c: float) -> float:
    """The data point within `w` of mu (or mu itself) with the smallest Q(m) = sum |x - m|^beta.

    For beta < 1 the likelihood at fixed beta peaks on a data point, and a bracketing search can
    stop a few points away from the best one. One pass splits the entries at R = 30 w from mu:
    near ones (|x - mu| < R) are kept and summed exactly for every candidate m, far ones enter
    through the binomial series |d - e|^b = sum_k C(b, k) |d|^(b - k) (-e sign d)^k, e = m - mu,
    |e| / |d| <= 1/30, whose sums F_k = sum sign(d)^k |d|^(b - k) come from the same pass.
    """
    xp = _xp(x)
    big_r = _POLISH_FAR * w
    order = _POLISH_ORDER
    far = np.zeros(order + 1)
    near_parts: list[np.ndarray] = []
    for ch in _f64_chunks(x):
        d = ch - mu
        d *= 1.0 / c
        is_far = abs(d) >= big_r / c
        near = d[~is_far]
        if len(near):
            near_parts.append(near.cpu().numpy() if _is_torch(near) else np.asarray(near))
        d = d[is_far]  # the chunk-sized buffer is released before the series terms are formed
        far += _binomial_far_sums(xp, d, beta, order)
    near_d = np.concatenate(near_parts) if near_parts else np.zeros(0)
    near_d = near_d[np.argsort(np.abs(near_d), kind="stable")]
    cand = np.unique(near_d[: int(np.searchsorted(np.abs(near_d), w / c, side="right"))])
    if cand.size > _POLISH_MAX_CANDIDATES:
        # too many candidates: narrow the window to the nearest distinct ones (radius r > 0) and
        # move the entries beyond the narrower near radius 30 r to the series
        cand = cand[np.argsort(np.abs(cand), kind="stable")[:_POLISH_MAX_CANDIDATES]]
        r = float(np.abs(cand).max())
        keep = int(np.searchsorted(np.abs(near_d), _POLISH_FAR * r, side="left"))
        far += _binomial_far_sums(np, near_d[keep:], beta, order)
        near_d = near_d[:keep]
    cand = np.concatenate([[0.0], cand])
    k = np.arange(1, order + 1)
    binom = np.cumprod((beta - k + 1) / k)  # C(beta, k), k = 1..order
    series = ((-cand[:, None]) ** k * (binom * far[1:])).sum(axis=1)
    q = np.empty(cand.size)
    step = max(1, (1 << 19) // max(near_d.size, 1))  # 4 MiB of float64 at a time
    for a in range(0, cand.size, step):
        q[a : a + step] = (np.abs(near_d[None, :] - cand[a : a + step, None]) ** beta).sum(axis=1)
    q += series
    return mu + c * float(cand[int(np.argmin(q))])


def _center_half_width(x: Any, n_eff: int) -> float:
    """Half the distance between the quantiles 0.5 -+ 5/sqrt(n_eff) of x: about 10 standard errors
    of the median, the bracket for the loc search."""
    t = min(0.45, 5.0 / math.sqrt(max(n_eff, 1)))
    if _is_torch(x):
        xs = x if len(x) <= 1 << 22 else _subsample(x, 1 << 20)
        q = sys.modules["torch"].quantile(xs.double(), xs.new_tensor([0.5 - t, 0.5 + t]).double())
        lo, hi = float(q[0]), float(q[1])
    else:
        lo, hi = np.quantile(x, [0.5 - t, 0.5 + t])
    return max(0.5 * float(hi - lo), 0.0)


def _gennorm_dq(x: Any, mu: float, beta: float, c: float) -> float:
    """sum sign(r) |r|^(beta - 1) for r = (x - mu) / c: minus the derivative of the loc objective
    over beta, decreasing in mu for beta >= 1 (one pass)."""
    xp = _xp(x)

    def fn(ch: Any) -> tuple:
        p = _log_abs_dev(ch, mu, c)
        p *= beta - 1.0
        xp.exp(p, out=p)
        return ((p * xp.sign(ch - mu)).sum(),)

    return _reduce(x, fn, 1)[0]


def _gennorm_loc_root(x: Any, beta: float, mu: float, half_width: float, c: float, xtol: float) -> float:
    """Location for 1 <= beta: the root of sum sign(x - mu) |x - mu|^(beta - 1) (convex objective),
    by Brent's method inside a bracket grown from mu -+ half_width until the sign changes."""
    h = max(half_width, xtol)
    f_lo, f_hi = _gennorm_dq(x, mu - h, beta, c), _gennorm_dq(x, mu + h, beta, c)
    for _ in range(40):
        if f_lo >= 0 >= f_hi:
            break
        h *= 4
        f_lo, f_hi = _gennorm_dq(x, mu - h, beta, c), _gennorm_dq(x, mu + h, beta, c)
    if f_lo == 0:
        return mu - h
    if f_hi == 0:
        return mu + h
    return float(scipy.optimize.brentq(lambda m: _gennorm_dq(x, m, beta, c), mu - h, mu + h, xtol=xtol))


def _gennorm_solve(x: Any, beta0: float, mu0: float, c: float, fit_loc: bool, scale_ref: float,
                   tol: float, half_width: float | None = None, fast: bool = False) -> _GNState:
    """Newton in beta (joint with Fisher scoring for loc when beta >= 1).

    For a free loc with beta < 1, alternate Newton in beta at fixed loc with a one-dimensional
    loc search at fixed beta (nearly orthogonal: their Fisher cross-information is zero by symmetry).
    fast=True (large float32/16 inputs) iterates with float32 passes (for a fixed loc a single
    `_gennorm_taylor_pass`) and finishes with float64 ones: two passes for a fixed loc.
    """
    passes = 0

    def polish(b: float, m: float, joint: bool) -> _GNState:
        nonlocal passes
        b1 = None
        if not joint:
            b1, _ = _gennorm_taylor_pass(x, b, m, c, exact=not fast)
            passes += 1
        else:  # beta from the Taylor model, loc by Fisher scoring, in the same pass
            for _ in range(10):
                b_new, sums = _gennorm_taylor_pass(x, b, m, c, score=True, exact=not fast)
                passes += 1
                if b_new is None:
                    break
                step_m = _gennorm_scoring_step(b, sums, len(x), c)
                done = abs(b_new - b) <= 1e-6 * b and abs(step_m) <= 1e-6 * scale_ref
                b, m = b_new, m + step_m
                if done:
                    b1 = b
                    break
        if fast and b1 is None:
            st = _gennorm_newton(x, b, m, c, joint, scale_ref, tol, exact=False)
            passes += st.passes
            b, m = st.beta, st.mu
        # float32 terms carry a bias of ~1 ulp (about 0.1 nat on 1e6 entries): the final pass,
        # whose sums give the reported likelihood, is float64
        st = _gennorm_newton(x, b if b1 is None else b1, m, c, joint, scale_ref, tol)
        passes += st.passes
        return st

    st = polish(beta0, mu0, fit_loc and beta0 >= JOINT_MIN_BETA)
    if not fit_loc or (beta0 >= JOINT_MIN_BETA and st.beta >= JOINT_MIN_BETA and st.converged):
        st.passes = passes
        return st
    h = _center_half_width(x, len(x)) if half_width is None else half_width
    h = max(h, 1e-9 * scale_ref)
    h0 = h
    mu = st.mu
    # h is about 10 standard errors of the loc: resolving it to 1e-3 h costs < 1e-4 nats
    xtol = max(1e-3 * h, 1e-12 * scale_ref)
    for rnd in range(5):
        if st.beta >= 1:
            mu_new = _gennorm_loc_root(x, st.beta, mu, h, c, xtol)
        else:
            mu_new = _gennorm_loc_search(x, st.beta, mu, h, c, xtol, fast)
        beta_old = st.beta
        st = polish(st.beta, mu_new, False)
        moved = abs(mu_new - mu)
        mu = mu_new
        se_beta = 1 / math.sqrt(-len(x) * st.h) if st.h < 0 else beta_old
        # the loc optimum moves with beta only at second order: once beta is settled to a tenth
        # of its standard error the loc found for it stands
        if abs(st.beta - beta_old) <= 0.1 * se_beta or (rnd >= 1 and moved <= 10 * xtol):
            break
        h = max(4 * moved, h / 4, 4 * xtol)
    if st.beta < 1:
        # the search above may stop a few data points from the best one (~1e-4 nats on 2e5
        # entries): step over the data points near the loc while the likelihood rises
        # a window holding about _POLISH_MAX_CANDIDATES data points: [mu -+ h0] holds a
        # fraction 2 t of them (see `_center_half_width`)
        t = min(0.45, 5.0 / math.sqrt(len(x) if half_width is None else SUBSAMPLE))
        w = max(_POLISH_MAX_CANDIDATES * h0 / (4 * t * len(x)), 1e-12 * scale_ref)
        for _ in range(8):
            mu_new = _gennorm_loc_polish(x, st.beta, st.mu, w, c)
            if mu_new == st.mu:
                break
            cand = polish(st.beta, mu_new, False)
            if not cand.ll > st.ll:
                break
            st = cand
    st.passes = passes
    return st


def _fit_gennorm(x: Any, loc: float | None, method: str) -> tuple[dict[str, float], float, list[str], dict]:
    n = len(x)
    fit_loc = loc is None
    # Large inputs: start (median, moment ratio, normalizer, warm Newton) on a random subsample,
    # then polish on all entries: about two passes over the data for a fixed loc.
    xs = _subsample(x, SUBSAMPLE, seed=1) if n > 4 * SUBSAMPLE and method == "mle" else None
    start = x if xs is None else xs
    center = _median(start) if fit_loc else float(loc)
    mom = _moments(start, center)
    if mom.max_abs == 0 and xs is not None:  # a constant subsample: look at everything
        xs, start = None, x
        mom = _moments(x, center)
    if mom.max_abs == 0:
        raise _Degenerate(center)
    flags: list[str] = []
    beta0 = gennorm_beta_from_ratio(mom.abs_mean / math.sqrt(mom.m2))
    if method == "moments":
        scale = mom.abs_mean * math.exp(sc.gammaln(1 / beta0) - sc.gammaln(2 / beta0))
        params = {"beta": beta0, "loc": mom.center + (mom.mean if fit_loc else 0.0), "scale": scale}
        return params, math.nan, flags, {}
    c = mom.max_abs
    scale_ref = mom.abs_mean
    mu0 = mom.center
    half_width = None
    if xs is not None:
        warm = _gennorm_solve(xs, beta0, mu0, c, fit_loc, scale_ref, tol=1e-6)
        beta0, mu0 = warm.beta, warm.mu
        if fit_loc and warm.beta < 1:
            half_width = _center_half_width(xs, SUBSAMPLE)
    # beta to 1e-7 relative: the log-likelihood is then within ~1e-8 nats of its maximum
    # float32 terms need |x - mu| / c and its powers inside float32's range
    fast = xs is not None and _low_precision(x) and 1e-30 < c < 1e30
    st = _gennorm_solve(x, beta0, mu0, c, fit_loc, scale_ref, tol=1e-7, half_width=half_width, fast=fast)
    if not all(math.isfinite(v) for v in st.sums):
        # an entry far beyond the subsample's range overflowed a^beta: normalize by the true max
        c = _moments(x, st.mu).max_abs
        st = _gennorm_solve(x, st.beta, st.mu, c, fit_loc, scale_ref, tol=1e-7, half_width=half_width)
    beta = st.beta
    scale = c * (beta * st.sums[0] / n) ** (1 / beta)
    lo, hi = BETA_BOUNDS
    if beta <= lo * (1 + 1e-9) and st.g < 0:
        flags.append(f"beta_at_lower_bound: beta hit {lo} (tails heavier than GenNorm can follow; try t)")
    if beta >= hi * (1 - 1e-9) and st.g > 0:
        flags.append(f"beta_at_upper_bound: beta hit {hi} (near-uniform sample)")
    if not st.converged:
        flags.append("not_converged: GenNorm Newton stopped at the iteration limit")
    se = {"beta": 1 / math.sqrt(-n * st.h)} if st.h < 0 else {"beta": math.nan}
    return {"beta": beta, "loc": st.mu, "scale": scale}, st.ll * n, flags, se


# ---------------------------------------------------------------------------------------------
# Normal, Laplace, Student-t


class _Degenerate(Exception):
    """The sample is constant: no scale can be fitted."""

    def __init__(self, value: float):
        super().__init__(value)
        self.value = value


def _fit_normal(x: Any, loc: float | None, method: str) -> tuple[dict[str, float], float, list[str], dict]:
    n = len(x)
    mu = _reduce(x, lambda c: (c.sum(),), 1)[0] / n if loc is None else float(loc)
    var = _reduce(x, lambda c: (((c - mu) ** 2).sum(),), 1)[0] / n
    if var == 0:
        raise _Degenerate(mu)
    return {"loc": mu, "scale": math.sqrt(var)}, -0.5 * n * (math.log(2 * math.pi * var) + 1), [], {}


def _fit_laplace(x: Any, loc: float | None, method: str) -> tuple[dict[str, float], float, list[str], dict]:
    n = len(x)
    if method == "moments":
        params, _, _, _ = _fit_normal(x, loc, method)
        return {"loc": params["loc"], "scale": params["scale"] / math.sqrt(2)}, math.nan, [], {}
    mu = _median(x) if loc is None else float(loc)
    b = _reduce(x, lambda c: (abs(c - mu).sum(),), 1)[0] / n
    if b == 0:
        raise _Degenerate(mu)
    return {"loc": mu, "scale": b}, -n * (math.log(2 * b) + 1), [], {}


def _t_loglik_grad(x: Any, nu: float, mu: float, sigma: float) -> tuple[float, np.ndarray]:
    """Student-t log-likelihood and its gradient in (log nu, log sigma, mu), one pass."""
    n = len(x)
    xp = _xp(x)

    def fn(c: Any) -> tuple:
        z = (c - mu) / sigma
        z2 = z * z
        u = 1.0 + z2 / nu
        return xp.log(u).sum(), (z2 / u).sum(), (z / u).sum()

    s_logu, s_z2u, s_zu = _reduce(x, fn, 3)
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


def _fit_t(x: Any, loc: float | None, method: str) -> tuple[dict[str, float], float, list[str], dict]:
    n = len(x)
    fit_loc = loc is None
    mu0 = _median(x) if fit_loc else float(loc)
    mom = _moments(x, mu0)
    if mom.max_abs == 0:
        raise _Degenerate(mu0)
    var = mom.m2 - (mom.mean**2 if fit_loc else 0.0)
    kurt = (mom.m4 / mom.m2**2) - 3.0 if mom.m2 > 0 else 0.0
    nu0 = min(max(4.0 + 6.0 / kurt, DF_BOUNDS[0]), 100.0) if kurt > 0.06 else 100.0
    if method == "moments":
        scale = math.sqrt(var * (nu0 - 2) / nu0) if nu0 > 2 else math.sqrt(var)
        return {"df": nu0, "loc": mu0 + (mom.mean if fit_loc else 0.0), "scale": scale}, math.nan, [], {}
    sigma0 = mom.abs_mean if mom.abs_mean > 0 else math.sqrt(var)
    flags: list[str] = []
    if n > 4 * SUBSAMPLE:
        nu0, mu0, sigma0, _, _ = _t_optimize(_subsample(x, SUBSAMPLE, seed=1), min(nu0, 30.0), mu0, sigma0,
                                             fit_loc, tol=1e-8)
    nu, mu, sigma, ll, ok = _t_optimize(x, min(nu0, 30.0), mu0, sigma0, fit_loc, tol=1e-12)
    if nu >= DF_BOUNDS[1] * 0.999:
        flags.append(f"df_at_upper_bound: df hit {DF_BOUNDS[1]:g} (Normal-like tails)")
    if nu <= DF_BOUNDS[0] * 1.001:
        flags.append(f"df_at_lower_bound: df hit {DF_BOUNDS[0]:g} (extremely heavy tails)")
    if not ok:
        flags.append("not_converged: L-BFGS-B did not report convergence for StudentT")
    return {"df": nu, "loc": mu, "scale": sigma}, ll, flags, {}


_FITTERS = {"normal": _fit_normal, "laplace": _fit_laplace, "gennorm": _fit_gennorm, "t": _fit_t}


# ---------------------------------------------------------------------------------------------
# public API


def _loglik(x: Any, dist: Family) -> float:
    """sum dist.logpdf(x) over float64 chunks (host evaluation with scipy)."""
    tot = 0.0
    for c in _f64_chunks(x):
        if _is_torch(c):
            c = c.cpu().numpy()
        tot += float(np.sum(dist.logpdf(c)))
    return tot


def _degenerate_fit(name: str, n: int, t0: float, flags: list[str], n_omitted: int, method: str,
                    loc_value: float = math.nan) -> Fit:
    base = name.removeprefix("zi-")
    params = {p: math.nan for p in FAMILIES[base]().param_names}
    if not math.isnan(loc_value):
        params["loc"] = loc_value
        params["scale"] = 0.0
    if name.startswith("zi-"):
        params = {"pi": math.nan, **params}
    return Fit(name, params, math.nan, math.nan, math.nan, n, time.perf_counter() - t0, tuple(flags), None,
               0, method, n_omitted)


def fit(x: Any, family: str = "gennorm", method: str = "mle", loc: str | float = "fit",
        nan_policy: str = "raise") -> Fit:
    """Fit one family to the entries of x (numpy array or torch tensor, any shape, any float dtype).

    family: 'normal', 'laplace', 'gennorm', 't', or 'zi-<family>' (point mass at 0 + family).
    method: 'mle' (maximum likelihood) or 'moments' (method of moments; loglik evaluated at it).
    loc: 'fit' to estimate the location, or a number to hold it fixed (0.0 for gradients).
    nan_policy: 'raise' (ValueError naming the NaN/Inf count) or 'omit' (dropped, counted, flagged).
    Degenerate samples (empty, constant, all zero) give a Fit with `dist=None` and a flag instead of
    an exception; samples under `SMALL_N` entries and shapes on their search bounds are flagged.
    """
    t0 = time.perf_counter()
    name = family_name(family)
    if method not in ("mle", "moments"):
        raise ValueError(f"method must be 'mle' or 'moments', got {method!r}")
    if isinstance(loc, str):
        if loc != "fit":
            raise ValueError(f"loc must be 'fit' or a number, got {loc!r}")
        loc_value: float | None = None
    else:
        loc_value = float(loc)
        if not math.isfinite(loc_value):
            raise ValueError(f"loc must be finite, got {loc_value}")
    v, n_omitted = prepare(x, nan_policy)
    flags: list[str] = [f"omitted_nonfinite: {n_omitted} NaN/Inf entries dropped"] if n_omitted else []
    n = len(v)
    if n == 0:
        return _degenerate_fit(name, 0, t0, [*flags, "empty: no finite entries to fit"], n_omitted, method)
    if name.startswith("zi-"):
        return _fit_zero_inflated(v, name, method, loc, flags, n_omitted, t0)
    if n < SMALL_N:
        flags.append(f"small_sample: n={n} < {SMALL_N}, estimates are unreliable")
    try:
        params, ll, extra, se = _FITTERS[name](v, loc_value, method)
    except _Degenerate as d:
        return _degenerate_fit(name, n, t0, [*flags, f"constant: all {n} entries equal {d.value:.6g} "
                               "(a point mass; no scale can be fitted)"], n_omitted, method, d.value)
    flags.extend(extra)
    ties = _count_equal(v, params["loc"])
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


def _fit_zero_inflated(v: Any, name: str, method: str, loc: str | float, flags: list[str],
                       n_omitted: int, t0: float) -> Fit:
    n = len(v)
    nonzero = v[v != 0]
    n0 = n - len(nonzero)
    pi = n0 / n
    if n0 == n:
        fitted = _degenerate_fit(name, n, t0, [*flags, f"all_zero: all {n} entries are exactly 0 (pi = 1, "
                                 "no continuous part to fit)"], n_omitted, method)
        fitted.params["pi"] = 1.0
        return fitted
    base = fit(nonzero, name.removeprefix("zi-"), method=method, loc=loc)
    flags = flags + list(base.flags)
    if base.dist is None:
        fitted = _degenerate_fit(name, n, t0, flags, n_omitted, method)
        fitted.params.update(base.params, pi=pi)
        return fitted
    dist = ZeroInflated(base.dist, pi)
    ll = base.loglik + (n0 * math.log(pi) if n0 else 0.0) + (n - n0) * math.log1p(-pi)
    k = base.k + 1
    return Fit(name, dist.params, ll, 2 * k - 2 * ll, k * math.log(n) - 2 * ll, n, time.perf_counter() - t0,
               tuple(flags), dist, k, method, n_omitted, dict(base.se))


# ---------------------------------------------------------------------------------------------
# many families, many layers

PARAM_COLUMNS = ("beta", "df", "pi", "loc", "scale")


def _best_by_bic(rows: list[dict], has_zeros: bool) -> None:
    """Mark the row with the lowest BIC. When the sample holds exact zeros and zero-inflated
    families were fitted, only those compete: a continuous density gives the atom at 0 zero
    probability, so its likelihood is not comparable with one that counts log pi per zero."""
    pool = [r for r in rows if math.isfinite(r["bic"])]
    if has_zeros and any(r["family"].startswith("zi-") for r in pool):
        pool = [r for r in pool if r["family"].startswith("zi-")]
    best = min(pool, key=lambda r: r["bic"]) if pool else None
    for r in rows:
        r["best"] = r is best


def fit_all(x: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), loc: str | float = "fit",
            nan_policy: str = "raise", goodness: bool = True, max_n: int | None = 200_000,
            seed: int = 0) -> pd.DataFrame:
    """Fit several families to one sample: a DataFrame with one row per family.

    Columns: family, beta, df, pi, loc, scale (NaN where a family has no such parameter), loglik,
    aic, bic, k, n, and with `goodness` the metrics of `gradstats.goodness` (ks, ad, w1, nll_bits,
    tail_log10_1e-02/-03/-04); then best (lowest BIC, see `_best_by_bic`), flags ('; '-joined),
    seconds (fit time), beta_se. `max_n` bounds the subsample of the sorting statistics.
    """
    from gradstats import goodness as gof

    v, n_omitted = prepare(x, nan_policy)
    rows = []
    for fam in families:
        f = fit(v, fam, loc=loc)
        row: dict[str, Any] = {"family": f.family}
        row.update({p: f.params.get(p, math.nan) for p in PARAM_COLUMNS})
        row.update(loglik=f.loglik, aic=f.aic, bic=f.bic, k=f.k, n=f.n)
        if goodness:
            cols = ["ks", "ad", "w1", "nll_bits"] + [gof.tail_column(p) for p in gof.TAIL_PS]
            if f.dist is None:
                row.update({c: math.nan for c in cols})
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    row.update(ks=gof.ks_statistic(v, f.dist, max_n, seed),
                               ad=gof.anderson_darling(v, f.dist, max_n, seed),
                               w1=gof.wasserstein1(v, f.dist, max_n, seed),
                               nll_bits=-f.loglik / (f.n * math.log(2.0)))
                    row.update({gof.tail_column(p): e for p, e in gof.tail_error(v, f.dist).items()})
        flags = list(f.flags)
        if n_omitted:
            flags.insert(0, f"omitted_nonfinite: {n_omitted} NaN/Inf entries dropped")
        row.update(flags="; ".join(flags), seconds=f.seconds, beta_se=f.se.get("beta", math.nan))
        rows.append(row)
    has_zeros = bool(len(v)) and int((v == 0).sum()) > 0
    _best_by_bic(rows, has_zeros)
    df = pd.DataFrame(rows)
    front = [c for c in df.columns if c not in ("flags", "seconds", "beta_se")]
    return df[[*front, "flags", "seconds", "beta_se"]]


def _select_layers(all_layers: Sequence[str], layers: str | Sequence[str] | None) -> list[str]:
    if layers is None:
        return list(all_layers)
    patterns = [layers] if isinstance(layers, str) else list(layers)
    chosen = [name for name in all_layers if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no layer matches {patterns!r}; layers are {list(all_layers)!r}")
    return chosen


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
        if _is_torch(v):
            idx = sys.modules["torch"].as_tensor(idx, device=v.device)
        reps.append(fit(v[idx], "gennorm", loc=loc).params["beta"])
    dev = (np.asarray(reps) - (np.mean(reps) if m < n else full)) * math.sqrt(m / n)
    a = (1 - level) / 2
    lo, hi = np.quantile(dev, [a, 1 - a])
    return float(full + lo), float(full + hi)


def fit_capture(capture: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), every: int = 1,
                layers: str | Sequence[str] | None = None, steps: Sequence[int] | None = None,
                ranks: Sequence[int] | None = (0,), kind: str = "grad", loc: str | float = "fit",
                goodness: bool = True, max_n: int | None = 200_000, bootstrap: int = 0,
                n_jobs: int | None = None, progress: bool = True, seed: int = 0) -> pd.DataFrame:
    """Fit `families` to every (step, layer, rank) record of a capture: one row per family.

    capture: a `captures.open_capture(path)` object (or a path, opened here). Uses every
    `every`-th recorded step (or exactly `steps`), the layers matching `layers` (glob or list of
    globs), `ranks` (None: all). Records are fitted in parallel threads (`n_jobs`, default
    min(4, CPUs); numpy and torch release the GIL in the reductions) with a tqdm progress bar.
    `bootstrap` > 0 adds a percentile bootstrap interval for beta (columns beta_lo, beta_hi).
    Columns: step, layer, rank, kind, family, beta, df, pi, loc, scale, loglik, aic, bic, k, n, ks,
    ad, w1, nll_bits, tail_log10_1e-02/-03/-04, best, flags, seconds, beta_se (see `fit_all`).
    """
    from tqdm.auto import tqdm

    if isinstance(capture, (str, os.PathLike)):
        from captures import open_capture

        sub = os.path.join(capture, "capture")
        capture = open_capture(sub if os.path.exists(os.path.join(sub, "manifest.json")) else capture)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    all_steps = list(capture.steps)
    chosen_steps = list(steps) if steps is not None else all_steps[::every]
    missing = sorted(set(chosen_steps) - set(all_steps))
    if missing:
        raise ValueError(f"steps {missing} are not in the capture (it has {all_steps})")
    chosen_layers = _select_layers(capture.layers, layers)
    chosen_ranks = list(capture.ranks) if ranks is None else list(ranks)
    tasks = [(s, name, r) for s in chosen_steps for name in chosen_layers for r in chosen_ranks]

    def run(task: tuple[int, str, int]) -> pd.DataFrame:
        step, name, rank = task
        try:
            values = capture.get(name, step, rank=rank, kind=kind)
        except ValueError as exc:  # e.g. the parameter had no gradient at that step
            values, missing = np.zeros(0), f"no_record: {exc}"
        else:
            missing = ""
        df = fit_all(values, families, loc=loc, nan_policy="omit", goodness=goodness, max_n=max_n, seed=seed)
        if missing:
            df["flags"] = missing
        if bootstrap > 0 and len(values):
            lo, hi = bootstrap_beta(values, bootstrap, loc=loc, seed=seed)
            df["beta_lo"] = np.where(df["family"].str.endswith("gennorm"), lo, np.nan)
            df["beta_hi"] = np.where(df["family"].str.endswith("gennorm"), hi, np.nan)
        df.insert(0, "kind", kind)
        df.insert(0, "rank", rank)
        df.insert(0, "layer", name)
        df.insert(0, "step", step)
        return df

    workers = n_jobs or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(tasks), desc="fit", unit="record", disable=not progress)
    frames: list[pd.DataFrame] = []
    if workers <= 1:
        for t in tasks:
            frames.append(run(t))
            bar.update()
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for df in pool.map(run, tasks):
                frames.append(df)
                bar.update()
    bar.close()
    if not frames:
        return pd.DataFrame(columns=["step", "layer", "rank", "kind", "family", *PARAM_COLUMNS, "loglik",
                                     "aic", "bic", "k", "n", "best", "flags"])
    return pd.concat(frames, ignore_index=True)


def summarize_fits(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per layer from a `fit_capture` DataFrame: the family most often best (by BIC) over
    steps and ranks, how often it won, the median beta of the winning GenNorm variant (or of plain
    gennorm), and the best family's median tail errors (log10 model / empirical tail probability)."""
    tail_cols = [c for c in fits.columns if c.startswith("tail_log10_")]
    rows = []
    for layer, g in fits.groupby("layer", sort=False):
        winners = g.loc[g["best"].astype(bool), "family"]
        best = winners.mode().iloc[0] if len(winners) else None
        # beta of the winning GenNorm variant (zi-gennorm or gennorm), else of plain gennorm
        gn = g[g["family"] == (best if best and best.endswith("gennorm") else "gennorm")]
        row = {"layer": layer, "records": int(g[["step", "rank"]].drop_duplicates().shape[0]),
               "best": best, "best_share": float((winners == best).mean()) if best else math.nan,
               "beta": float(gn["beta"].median()) if len(gn) else math.nan}
        bg = g[g["family"] == best] if best else g.iloc[:0]
        row.update({c: float(bg[c].median()) if len(bg) else math.nan for c in tail_cols})
        rows.append(row)
    return pd.DataFrame(rows)
