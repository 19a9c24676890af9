"""The location of a GenNorm at fixed shape beta: the one-dimensional searches of the profile solver.

For beta >= 1 the loc objective Q(m) = sum |x - m|^beta is convex and the loc is the root of its
derivative (`loc_root`, Brent in a grown bracket). For beta < 1 Q has a cusp at every data point:
a bounded Brent search finds the smooth large-scale minimum (`loc_search`; from 2^15 entries on the
compressed sums of `gradstats.gennorm_binned.CentreBins`) and `loc_polish` steps over the data points
near it, since the exact maximum of the likelihood sits on one of them.
"""
from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import scipy.optimize

from gradstats.arrays import (
    array_namespace,
    chunked_sum,
    chunked_sum_f32,
    f64_chunks,
    is_torch,
    log_abs_dev,
    log_abs_dev_zeroed,
    low_precision,
    subsample,
    sum64,
)
from gradstats.gennorm_binned import CentreBins, candidate_power_sums


def loc_objective(x: Any, mu: float, beta: float, c: float, exact: bool = True) -> float:
    """sum |(x - mu) / c|^beta in one pass (the loc objective at fixed beta); exact=False as in
    `gennorm_sums`."""
    xp = array_namespace(x)
    if not exact and low_precision(x):

        def fast(ch: Any) -> tuple:
            p, zero = log_abs_dev_zeroed(ch, mu, c)
            p *= beta
            return (sum64(xp.exp(p, out=p)) - zero.sum(),)

        return chunked_sum_f32(x, fast, 1)[0]

    def fn(ch: Any) -> tuple:
        p = log_abs_dev(ch, mu, c)
        p *= beta
        return (xp.exp(p, out=p).sum(),)

    return chunked_sum(x, fn, 1)[0]


def neighbours(x: Any, mu: float) -> list[float]:
    """The data points just below and just above mu (one pass).

    A float32 numpy vector is compared in its own precision against m, the largest float32 <= mu
    (x <= mu exactly when x <= m), with no float64 copy; a float64 one against mu itself. The
    answer is formed as mu + (x - mu) in float64 as for other inputs (x - mu <= 0 exactly when
    x <= mu, and rounding keeps the order of the differences), so every path gives the same numbers.
    """
    lo, hi = -math.inf, math.inf
    if len(x) == 0:
        return []
    if not is_torch(x) and x.dtype in (np.float32, np.float64) and math.isfinite(mu):
        m = x.dtype.type(mu)
        if float(m) > mu:
            m = np.nextafter(m, x.dtype.type(-np.inf))
        # with k entries <= m, they are the k smallest: one partition puts the largest of them at
        # k - 1 and the rest above it (numpy's masked max / min or np.where over a random mask
        # cost 3-5x as much)
        k = int(np.count_nonzero(x <= m))
        if k == 0 or k == len(x):
            lo_x = -math.inf if k == 0 else float(x.max())
            hi_x = math.inf if k else float(x.min())
        else:
            part = np.partition(x, k - 1)
            lo_x, hi_x = float(part[k - 1]), float(part[k:].min())
        return [mu + (v - mu) for v in (lo_x, hi_x) if math.isfinite(v)]
    for ch in f64_chunks(x):
        d = ch - mu
        below, above = d[d <= 0], d[d > 0]
        if len(below):
            lo = max(lo, float(below.max()))
        if len(above):
            hi = min(hi, float(above.min()))
    return [mu + v for v in (lo, hi) if math.isfinite(v)]


BINNED_SEARCH_MIN_N = 1 << 15
"""From this many (host) entries `loc_search` steps on compressed sums instead of passes over x."""


def _float32_exact(x: Any, mu: float, c: float, half_width: float) -> bool:
    """True when `CentreBins`, which indexes (and takes its offsets from) x in float32, sees x
    exactly: a host vector of float32 / float16 values (also as float64, e.g. a subsample of
    them) with its spread and bracket inside float32's normal range, and the centre's float32
    rounding far below the bracket (the bins are chosen from float32 offsets)."""
    if is_torch(x) or not (1e-30 < c < 1e30 and half_width > 1e-30):
        return False
    if abs(mu) * 2.0**-23 > 1e-3 * half_width:
        return False
    if x.dtype in (np.float32, np.float16):
        return True
    return x.dtype == np.float64 and bool(np.array_equal(x.astype(np.float32), x))


def loc_search(x: Any, beta: float, mu: float, half_width: float, c: float, xtol: float,
                        fast: bool = False) -> float:
    """Location for beta < 1, where sum |x - mu|^beta has a cusp at every data point.

    A local step sticks to the nearest cusp, so the smooth large-scale minimum is found by bounded
    Brent over [mu - h, mu + h]; then the data points on either side of it are tried as well
    (the exact maximum of the likelihood sits on a data point).
    """
    if len(x) >= BINNED_SEARCH_MIN_N and half_width > 0 and _float32_exact(x, mu, c, half_width):
        # the Brent steps on the sums of `CentreBins` (one compressing pass, then O(bins) per step,
        # ~1e-9 relative); the data points either side of its end are compared exactly below
        bins = CentreBins(x, mu, half_width, c)

        def objective(m: float) -> float:
            return bins.sums((m - bins.m0) / c, beta, 0)[0]
    else:

        def objective(m: float) -> float:
            return loc_objective(x, m, beta, c, exact=not fast)

    res = scipy.optimize.minimize_scalar(objective, method="bounded",
                                         bounds=(mu - half_width, mu + half_width),
                                         options={"xatol": xtol, "maxiter": 500})
    around = neighbours(x, float(res.x))
    # for beta < 1, Q is concave between data points: on the interval holding the Brent point its
    # minimum is at an end, so the point itself needs no pass of its own (it wins only as one of them)
    cands = around if beta < 1 and around else [float(res.x), *around]
    vals = [loc_objective(x, m, beta, c, exact=not fast) for m in cands]
    return cands[int(np.argmin(vals))]


POLISH_FAR = 12.0
"""Entries farther than this many candidate-window widths from the loc enter the polish through a
Taylor series in the loc shift (terms below (1/12)^13 / 13 ~ 7e-16 of theirs are dropped). Each
near entry costs one power per candidate (~128), each order of the series one product per far
entry: 12 and order 12 cost ~40 % of 30 and order 8 (5e-14), and are more accurate."""
POLISH_ORDER = 12
POLISH_MAX_CANDIDATES = 128


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


def loc_polish(x: Any, beta: float, mu: float, w: float, c: float) -> float:
    """The data point within `w` of mu (or mu itself) with the smallest Q(m) = sum |x - m|^beta.

    For beta < 1 the likelihood at fixed beta peaks on a data point, and a bracketing search can
    stop a few points away from the best one. One pass splits the entries at R = 12 w from mu (`POLISH_FAR`):
    near ones (|x - mu| < R) are kept and summed exactly for every candidate m, far ones enter
    through the binomial series |d - e|^b = sum_k C(b, k) |d|^(b - k) (-e sign d)^k, e = m - mu,
    |e| / |d| <= 1/12, whose sums F_k = sum sign(d)^k |d|^(b - k) come from the same pass.
    """
    xp = array_namespace(x)
    big_r = POLISH_FAR * w
    order = POLISH_ORDER
    far = np.zeros(order + 1)
    near_parts: list[np.ndarray] = []
    for ch in f64_chunks(x):
        d = ch - mu
        d *= 1.0 / c
        is_far = abs(d) >= big_r / c
        near = d[~is_far]
        if len(near):
            near_parts.append(near.cpu().numpy() if is_torch(near) else np.asarray(near))
        d = d[is_far]  # the chunk-sized buffer is released before the series terms are formed
        far += _binomial_far_sums(xp, d, beta, order)
    near_d = np.concatenate(near_parts) if near_parts else np.zeros(0)
    near_d = near_d[np.argsort(np.abs(near_d), kind="stable")]
    cand = np.unique(near_d[: int(np.searchsorted(np.abs(near_d), w / c, side="right"))])
    if cand.size > POLISH_MAX_CANDIDATES:
        # too many candidates: narrow the window to the nearest distinct ones (radius r > 0) and
        # move the entries beyond the narrower near radius POLISH_FAR r to the series
        cand = cand[np.argsort(np.abs(cand), kind="stable")[:POLISH_MAX_CANDIDATES]]
        r = float(np.abs(cand).max())
        keep = int(np.searchsorted(np.abs(near_d), POLISH_FAR * r, side="left"))
        far += _binomial_far_sums(np, near_d[keep:], beta, order)
        near_d = near_d[:keep]
    cand = np.concatenate([[0.0], cand])
    k = np.arange(1, order + 1)
    binom = np.cumprod((beta - k + 1) / k)  # C(beta, k), k = 1..order
    series = ((-cand[:, None]) ** k * (binom * far[1:])).sum(axis=1)
    q = candidate_power_sums(near_d, cand, beta, None, 1 << 19)  # 4 MiB of float64 at a time
    q += series
    return mu + c * float(cand[int(np.argmin(q))])


def center_half_width(x: Any, n_eff: int) -> float:
    """Half the distance between the quantiles 0.5 -+ 5/sqrt(n_eff) of x: about 10 standard errors
    of the median, the bracket for the loc search."""
    t = min(0.45, 5.0 / math.sqrt(max(n_eff, 1)))
    if is_torch(x):
        xs = x if len(x) <= 1 << 22 else subsample(x, 1 << 20)
        q = sys.modules["torch"].quantile(xs.double(), xs.new_tensor([0.5 - t, 0.5 + t]).double())
        lo, hi = float(q[0]), float(q[1])
    else:
        lo, hi = quantile_pair(x, 0.5 - t, 0.5 + t)
    return max(0.5 * float(hi - lo), 0.0)


def quantile_pair(x: np.ndarray, q_lo: float, q_hi: float) -> tuple[float, float]:
    """np.quantile(x, [q_lo, q_hi]) (its default 'linear' method, Hyndman & Fan type 7), bit for bit,
    from two single-kth partitions: numpy's own partition at the four order statistics at once costs
    ~5x as much (1.6 ms against 0.3 ms on 65536 entries)."""
    n = len(x)
    if n == 0 or not 0 <= q_lo <= q_hi <= 1:
        return tuple(float(v) for v in np.quantile(x, [q_lo, q_hi]))  # numpy's errors and NaN
    v = (n - 1) * np.array([q_lo, q_hi])
    k = np.floor(v).astype(np.intp)
    gamma = v - k
    k_lo, k_hi = (int(i) for i in k)
    if k_hi >= n - 1:  # the top order statistic: no interpolation partner
        k_hi = n - 1
    part = np.partition(x, k_hi)
    hi_a = part[k_hi]
    hi_b = part[k_hi + 1 :].min() if k_hi + 1 < n else hi_a
    if k_lo == k_hi:
        lo_a, lo_b = hi_a, hi_b
    else:
        left = np.partition(part[:k_hi], k_lo)
        lo_a = left[k_lo]
        lo_b = left[k_lo + 1 :].min() if k_lo + 1 < k_hi else hi_a
    a, b = np.array([lo_a, hi_a]), np.array([lo_b, hi_b])
    # numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) for t >= 1/2 (exact at both ends)
    diff = b - a
    out = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return float(out[0]), float(out[1])


def loc_score(x: Any, mu: float, beta: float, c: float) -> float:
    """sum sign(r) |r|^(beta - 1) for r = (x - mu) / c: minus the derivative of the loc objective
    over beta, decreasing in mu for beta >= 1 (one pass)."""
    xp = array_namespace(x)

    def fn(ch: Any) -> tuple:
        p = log_abs_dev(ch, mu, c)
        p *= beta - 1.0
        xp.exp(p, out=p)
        return ((p * xp.sign(ch - mu)).sum(),)

    return chunked_sum(x, fn, 1)[0]


def loc_root(x: Any, beta: float, mu: float, half_width: float, c: float, xtol: float) -> float:
    """Location for 1 <= beta: the root of sum sign(x - mu) |x - mu|^(beta - 1) (convex objective),
    by Brent's method inside a bracket grown from mu -+ half_width until the sign changes."""
    h = max(half_width, xtol)
    f_lo, f_hi = loc_score(x, mu - h, beta, c), loc_score(x, mu + h, beta, c)
    for _ in range(40):
        if f_lo >= 0 >= f_hi:
            break
        h *= 4
        f_lo, f_hi = loc_score(x, mu - h, beta, c), loc_score(x, mu + h, beta, c)
    if f_lo == 0:
        return mu - h
    if f_hi == 0:
        return mu + h
    return float(scipy.optimize.brentq(lambda m: loc_score(x, m, beta, c), mu - h, mu + h, xtol=xtol))
