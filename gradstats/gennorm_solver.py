"""GenNorm maximum likelihood: the profile-likelihood solver in the shape beta.

Moment-ratio start (E|x - mu| / sqrt(E (x - mu)^2) = Gamma(2/b) / sqrt(Gamma(1/b) Gamma(3/b))
inverted for b), then safeguarded Newton on the profile log-likelihood in beta, with the scale in
closed form given beta (Varanasi & Aazhang 1989, "Parametric generalized Gaussian density
estimation"): s^b = (b / n) sum |x - mu|^b. A free loc is Fisher-scored in the same passes for
b >= 1; for b < 1 (a cusp at every data point) it is found by the searches of `gradstats.gennorm_loc`.

Inputs above 4 x 65536 entries start from a random subsample of 65536 (median, moment ratio, warm
Newton); float32 ones then iterate with float32 terms (a Taylor model of the profile likelihood in
beta from one pass) and finish with one float64 pass, which gives the reported log-likelihood: two
passes over the data for a fixed loc. A free loc at beta < 1 on 2^18 entries or more is searched
on `gradstats.gennorm_binned.CentreBins` (one compressing pass), then one float64 pass of T0 gives
the scale and the reported log-likelihood: two passes over the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special as sc

from gradstats.arrays import (
    CHUNK,
    SUBSAMPLE,
    ConstantSample,
    array_namespace,
    central_moments,
    chunked_sum,
    chunked_sum_f32,
    is_torch,
    log_abs_dev,
    log_abs_dev_zeroed,
    low_precision,
    median,
    subsample,
    sum64,
)
from gradstats.gennorm_binned import CentreBins
from gradstats.gennorm_loc import (
    POLISH_MAX_CANDIDATES,
    center_half_width,
    loc_polish,
    loc_root,
    loc_search,
)

BETA_BOUNDS = (0.05, 50.0)
"""GenNorm shape range searched; a fit that ends on a bound is flagged (heavy tails / near uniform)."""
JOINT_MIN_BETA = 1.0
"""From this shape up a free loc is updated by Fisher scoring in the same passes as beta."""



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


def profile_loglik(beta: float, t0: float, n: int, logc: float) -> float:
    """Profile log-likelihood per entry at shape beta, with s^b = b T0 / n in units of c."""
    return (math.log(beta) - math.log(2.0) - sc.gammaln(1 / beta) - logc
            - math.log(beta * t0 / n) / beta - 1 / beta)


def profile_grad_hess(beta: float, t0: float, t1: float, t2: float, n: int) -> tuple[float, float]:
    """First and second derivative in beta of `profile_loglik`.

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


def gennorm_sums(x: Any, mu: float, beta: float, c: float, fit_loc: bool, exact: bool = True) -> list[float]:
    """One pass: T0, T1, T2 (sums of a^b, a^b log a, a^b log^2 a for a = |x - mu| / c) and, for a
    free loc, S = sum sign(x - mu) a^(b - 1) (the loc score up to a factor).

    exact=False on float32/16 data computes the terms in float32 (float64 sums): about half the
    cost, relative error ~1e-7, good for the Newton iterations but not for the reported likelihood.
    """
    xp = array_namespace(x)
    if not exact and low_precision(x):

        def fast(ch: Any) -> tuple:
            lg, zero = log_abs_dev_zeroed(ch, mu, c)
            p = lg * beta
            xp.exp(p, out=p)
            t0 = sum64(p) - zero.sum()
            if fit_loc:
                q = lg * (beta - 1.0)
                xp.exp(q, out=q)
                score = sum64(q * xp.sign(ch - mu))
            p *= lg
            t1 = sum64(p)
            p *= lg
            t2 = sum64(p)
            return (t0, t1, t2, score) if fit_loc else (t0, t1, t2)

        return chunked_sum_f32(x, fast, 4 if fit_loc else 3)

    def fn(ch: Any) -> tuple:
        lg = log_abs_dev(ch, mu, c)
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

    return chunked_sum(x, fn, 4 if fit_loc else 3)


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
    `gennorm_sums`, only with score=True).
    """
    xp = array_namespace(x)
    order = _TAYLOR_ORDER

    def fn(ch: Any) -> tuple:
        lg, zero = log_abs_dev_zeroed(ch, mu, c)
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
    m = chunked_sum(x, fn, k) if exact or not low_precision(x) else chunked_sum_f32(x, fn, k)
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
        g, h = profile_grad_hess(b, t0, t(1, d), t(2, d), n)
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

    Each iteration is one pass (`gennorm_sums`); a step that lowers the likelihood is halved.
    Stops when the steps are below `tol` (relative to beta and to the scale) or when the
    predicted gain of the next step is below 1e-4 nats.
    """
    n = len(x)
    logc = math.log(c)
    lo, hi = BETA_BOUNDS
    # float32 passes carry ~1e-8 relative noise in the per-entry likelihood
    slack = 1e-15 if exact or not low_precision(x) else 1e-9
    # exact passes stop once the next step would gain < 1e-6 nats; float32 passes (a warm start
    # for the exact ones) run until the steps are below tol, with a short line search since their
    # likelihood differences drown in rounding near the optimum
    gain_tol = 1e-6 if exact else 0.0
    max_halvings = 40 if slack < 1e-12 else 6

    def evaluate(b: float, m: float) -> tuple[list[float], float]:
        s = gennorm_sums(x, m, b, c, fit_loc, exact)
        return s, profile_loglik(b, s[0], n, logc)

    sums, ll = evaluate(beta, mu)
    passes, converged = 1, False
    for _ in range(max_iter):
        g, h = profile_grad_hess(beta, sums[0], sums[1], sums[2], n)
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
    g, h = profile_grad_hess(beta, sums[0], sums[1], sums[2], n)
    return _GNState(beta, mu, sums, ll, g, h, passes, converged)



BINNED_MIN_N = 1 << 18
"""From this many entries a free loc at beta < 1 is searched on `CentreBins` (one compressing pass)
instead of by ~20-30 passes over every entry."""


def _binned_newton(bins: CentreBins, e: float, beta: float, logc: float) -> float:
    """Safeguarded Newton in beta on the compressed sums at loc offset e (as `_gennorm_newton`).

    Each trial shape costs one evaluation of T0..T2: T0 decides the line search, and T1, T2 of an
    accepted trial give the next step.
    """
    n = bins.n
    lo, hi = BETA_BOUNDS
    sums = bins.sums(e, beta, 2)
    cur = profile_loglik(beta, sums[0], n, logc)
    for _ in range(60):
        g, h = profile_grad_hess(beta, *sums, n)
        step = -g / h if h < 0 else math.copysign(0.5 * beta, g)
        new_b = min(max(beta + min(max(step, -0.5 * beta), beta), lo), hi)
        t = 1.0
        for _ in range(40):
            b_try = beta + t * (new_b - beta)
            s_try = bins.sums(e, b_try, 2)
            ll_try = profile_loglik(b_try, s_try[0], n, logc)
            if ll_try >= cur - 1e-15 * abs(cur):
                break
            t *= 0.5
        else:
            return beta
        done = abs(b_try - beta) <= 1e-10 * beta
        beta, cur, sums = b_try, ll_try, s_try
        if done:
            break
    return beta


def _binned_loc_search(x: Any, beta: float, mu0: float, c: float, scale_ref: float,
                       half_width: float) -> tuple[float | None, float, CentreBins, float]:
    """(loc, beta, bins, e) for beta < 1 from one compressing pass over x (`CentreBins` around mu0;
    the loc is bins.m0 + c e).

    The same alternation as the exact path of `_gennorm_solve` (Newton in beta at fixed loc, a
    bounded Brent search of the loc at fixed beta, then the data points near it), on the binned
    sums. loc None when the loc runs to the edge of the bracket or beta reaches 1 (the exact
    path takes over).
    """
    h = max(half_width, 1e-9 * scale_ref)
    bins = CentreBins(x, mu0, h, c)
    logc = math.log(c)
    hc = h / c
    xtol = max(1e-3 * hc, 1e-12 * scale_ref / c)
    t = min(0.45, 5.0 / math.sqrt(SUBSAMPLE))  # as the exact polish: ~POLISH_MAX_CANDIDATES points
    w = max(POLISH_MAX_CANDIDATES * hc / (4 * t * len(x)), 1e-12 * scale_ref / c)
    e = 0.0
    for rnd in range(8):
        beta_new = _binned_newton(bins, e, beta, logc)
        if beta_new >= JOINT_MIN_BETA:
            return None, beta_new, bins, e
        if rnd and abs(beta_new - beta) <= 1e-7 * beta:
            # the shape stood still at the loc of the last round, whose search ran at this shape
            # to 1e-7: searching again would end where that one did
            beta = beta_new
            break
        res = scipy.optimize.minimize_scalar(lambda m, b=beta_new: bins.sums(m, b, 0)[0], method="bounded",
                                             bounds=(-hc, hc), options={"xatol": xtol, "maxiter": 500})
        e_new = float(res.x)
        for _ in range(8):  # step over the data points near it while Q falls
            cand, q = bins.polish_q(e_new, beta_new, w)
            best = float(cand[int(np.argmin(q))])
            if best == e_new:
                break
            e_new = best
        if abs(e_new) > 0.9 * hc:
            return None, beta_new, bins, e_new
        moved, shape_moved = abs(e_new - e), abs(beta_new - beta)
        beta, e = beta_new, e_new
        if moved <= xtol and shape_moved <= 1e-7 * beta:
            break
    return bins.m0 + c * e, beta, bins, e


def _power_sum(x: np.ndarray, mu: float, beta: float, c: float) -> float:
    """T0 = sum |(x - mu) / c|^beta over a host vector in float64, as exp(beta (log|x - mu| - log c)).

    `loc_objective`'s number in two passes fewer a chunk: the chunk's own float64 copy is worked in
    place, and an entry at mu gives exp(-inf) = 0 with no clamp (the clamped 1e-300^beta it adds
    there is below 1e-15).
    """
    log_c = math.log(c)
    total = 0.0
    with np.errstate(divide="ignore"):
        for i in range(0, len(x), CHUNK):
            d = x[i : i + CHUNK].astype(np.float64)  # a copy even of float64 data: worked in place
            d -= mu
            np.abs(d, out=d)
            np.log(d, out=d)
            d -= log_c
            d *= beta
            total += float(np.exp(d, out=d).sum())
    return total


def _binned_final(x: Any, bins: CentreBins, e: float, beta: float, mu: float, c: float,
                  tol: float) -> _GNState | None:
    """The state at the binned search's (loc, beta) from one exact pass for T0 alone, or None when
    beta is not yet converged there (the caller then iterates with exact passes).

    T0 (the scale and the reported log-likelihood) is summed over every entry in float64; T1 and
    T2, which only enter the convergence test and the standard error of beta through the
    derivatives of the profile likelihood, come from the bins (~1e-9 relative). The test is
    `_gennorm_newton`'s: converged when the Newton step is below tol beta or would gain
    < 1e-6 nats.
    """
    n = len(x)
    t0 = _power_sum(x, mu, beta, c)
    _, t1, t2 = bins.sums(e, beta, 2)
    sums = [t0, t1, t2]
    g, h = profile_grad_hess(beta, t0, t1, t2, n)
    if not (h < 0 and math.isfinite(t0)):
        return None
    step = min(max(-g / h, -0.5 * beta), beta)
    new_b = min(max(beta + step, BETA_BOUNDS[0]), BETA_BOUNDS[1])
    if abs(new_b - beta) <= tol * beta or 0.5 * n * g * g / -h <= 1e-6:
        return _GNState(beta, mu, sums, profile_loglik(beta, t0, n, math.log(c)), g, h, 1, True)
    return None


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

    if (fit_loc and fast and half_width is not None and beta0 < JOINT_MIN_BETA and not is_torch(x)
            and len(x) >= BINNED_MIN_N):
        mu_b, beta_b, bins, e_b = _binned_loc_search(x, beta0, mu0, c, scale_ref, half_width)
        if mu_b is not None:  # beta, the scale and the likelihood at that loc from exact passes
            # (beta is already at the binned optimum, ~1e-11 off: one float64 pass confirms it)
            st = _binned_final(x, bins, e_b, beta_b, mu_b, c, tol)
            return _gennorm_newton(x, beta_b, mu_b, c, False, scale_ref, tol) if st is None else st
    st = polish(beta0, mu0, fit_loc and beta0 >= JOINT_MIN_BETA)
    if not fit_loc or (beta0 >= JOINT_MIN_BETA and st.beta >= JOINT_MIN_BETA and st.converged):
        st.passes = passes
        return st
    h = center_half_width(x, len(x)) if half_width is None else half_width
    h = max(h, 1e-9 * scale_ref)
    h0 = h
    mu = st.mu
    # h is about 10 standard errors of the loc: resolving it to 1e-3 h costs < 1e-4 nats
    xtol = max(1e-3 * h, 1e-12 * scale_ref)
    for rnd in range(5):
        if st.beta >= 1:
            mu_new = loc_root(x, st.beta, mu, h, c, xtol)
        else:
            mu_new = loc_search(x, st.beta, mu, h, c, xtol, fast)
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
        # a window holding about POLISH_MAX_CANDIDATES data points: [mu -+ h0] holds a
        # fraction 2 t of them (see `center_half_width`)
        t = min(0.45, 5.0 / math.sqrt(len(x) if half_width is None else SUBSAMPLE))
        w = max(POLISH_MAX_CANDIDATES * h0 / (4 * t * len(x)), 1e-12 * scale_ref)
        for _ in range(8):
            mu_new = loc_polish(x, st.beta, st.mu, w, c)
            if mu_new == st.mu:
                break
            cand = polish(st.beta, mu_new, False)
            if not cand.ll > st.ll:
                break
            st = cand
    st.passes = passes
    return st


def fit_gennorm(x: Any, loc: float | None, method: str) -> tuple[dict[str, float], float, list[str], dict]:
    """GenNorm estimate of a prepared vector: (params, log-likelihood, flags, standard errors).

    loc None fits the location; method 'mle' or 'moments' (log-likelihood NaN: evaluate it).
    Raises `ConstantSample` for a sample without spread.
    """
    n = len(x)
    fit_loc = loc is None
    # Large inputs: start (median, moment ratio, normalizer, warm Newton) on a random subsample,
    # then polish on all entries: about two passes over the data for a fixed loc.
    xs = subsample(x, SUBSAMPLE, seed=1) if n >= 4 * SUBSAMPLE and method == "mle" else None
    start = x if xs is None else xs
    center = median(start) if fit_loc else float(loc)
    mom = central_moments(start, center)
    if mom.max_abs == 0 and xs is not None:  # a constant subsample: look at everything
        xs, start = None, x
        mom = central_moments(x, center)
    if mom.max_abs == 0:
        raise ConstantSample(center)
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
        # (the subsample's own loc search centres the binned one: centred on the median instead,
        # the search ended on a lower local maximum on 5 of 34 real records, by up to 36 nats)
        warm = _gennorm_solve(xs, beta0, mu0, c, fit_loc, scale_ref, tol=1e-6)
        beta0, mu0 = warm.beta, warm.mu
        if fit_loc and warm.beta < 1:
            half_width = center_half_width(xs, SUBSAMPLE)
    # beta to 1e-7 relative: the log-likelihood is then within ~1e-8 nats of its maximum
    # float32 terms need |x - mu| / c and its powers inside float32's range
    fast = xs is not None and low_precision(x) and 1e-30 < c < 1e30
    st = _gennorm_solve(x, beta0, mu0, c, fit_loc, scale_ref, tol=1e-7, half_width=half_width, fast=fast)
    if not all(math.isfinite(v) for v in st.sums):
        # an entry far beyond the subsample's range overflowed a^beta: normalize by the true max
        c = central_moments(x, st.mu).max_abs
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
