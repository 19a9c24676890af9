"""Goodness of fit of a family to a sample, with the emphasis on the tails.

Every function takes the sample `x` (numpy array or torch tensor, any shape, or a `Sample` that
holds what several families' statistics share: one sorted subsample, the top order statistics of
|x - loc|) and a frozen family `dist` from `gradstats.families`. The distance statistics (KS, AD,
W1) sort the sample; above `max_n` entries they use a uniform random subsample of `max_n`
entries (fixed `seed`), which bounds their cost and adds sampling noise of order 1/sqrt(max_n) to
them. `nll_bits` and `tail_error` always use every entry, since the tails are what they measure.
GenNorm's cdf is evaluated exactly at every 32nd sorted point and interpolated in between, each
block checked against the exact value (`gradstats.sorted_cdf`): the statistics agree with the
exact evaluation to ~5e-10 relative at a third of its cost.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy as np
import pandas as pd

from gradstats import goodness_torch, sorted_cdf
from gradstats.arrays import is_torch
from gradstats.families import Family, ZeroInflated

MAX_N = 200_000
"""Default subsample size of the sorting statistics (KS, AD, W1)."""
TAIL_PS = (1e-2, 1e-3, 1e-4)
"""Tail probabilities of `tail_error`."""
TAIL_MIN_COUNT = 10
"""A tail probability p is reported only when n p >= this many entries lie beyond t_p."""


def _finite_vector(x: Any) -> Any:
    """x flattened (numpy or torch, own dtype); ValueError if it holds NaN or Inf."""
    if is_torch(x):
        v = x.detach().reshape(-1)
        bad = int((~v.isfinite()).sum()) if v.is_floating_point() else 0
    else:
        v = np.asarray(x).reshape(-1)
        bad = int(np.count_nonzero(~np.isfinite(v))) if v.dtype.kind == "f" else 0
    if bad:
        raise ValueError(f"goodness of fit: sample contains {bad} NaN/Inf values; drop them first")
    if len(v) == 0:
        raise ValueError("goodness of fit: empty sample")
    return v


@functools.lru_cache(maxsize=8)
def _draw_index(n: int, m: int, seed: int) -> np.ndarray:
    """The sorted indices of m of n entries drawn without replacement (read-only, kept per size: a
    capture's layers repeat a few sizes, and the draw and its sort cost ~4 ms at 1M)."""
    idx = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    idx.setflags(write=False)
    return idx


def _draw(v: Any, max_n: int | None, seed: int) -> Any:
    """At most max_n entries of the vector v (uniform without replacement) as float64: numpy on the
    host, or a torch tensor on v's device (the statistics then run there, `goodness_torch`)."""
    n = len(v)
    if max_n is not None and n > max_n:
        idx = _draw_index(n, int(max_n), seed)
        if is_torch(v):
            idx = sys.modules["torch"].as_tensor(np.array(idx), device=v.device)  # a writable copy
        v = v[idx]
    if is_torch(v):
        return v.double()
    return np.asarray(v, dtype=np.float64)


class Sample:
    """A sample prepared once for the goodness of fit of every family: computed per (layer, step).

    `sorted` is the uniform subsample of at most `max_n` entries (fixed `seed`), float64 on the
    host, sorted once for KS, AD, W1 and QQ; `upper_abs(loc, k)` the k largest |x - loc| over all
    entries, kept per loc for the tail errors. Every function of this module accepts a `Sample` in
    place of `x` (with other `max_n` / `seed` it draws its own subsample from the same values).
    """

    def __init__(self, x: Any, max_n: int | None = MAX_N, seed: int = 0):
        self.values = x.values if isinstance(x, Sample) else _finite_vector(x)
        self.n = len(self.values)
        self.max_n = max_n
        self.seed = seed
        self._sorted: Any = None
        self._sorted_host: np.ndarray | None = None
        self._upper: dict[tuple[float, int], np.ndarray] = {}
        self._pool: tuple[float, float, np.ndarray] | None = None
        self._distances: dict[tuple, dict[str, float]] = {}

    @property
    def sorted(self) -> Any:
        """The subsample, ascending (np.sort of the draw; torch.sort on the device for a tensor)."""
        if self._sorted is None:
            v = self.values
            if is_torch(v):
                self._sorted = sys.modules["torch"].sort(_draw(v, self.max_n, self.seed)).values
            else:
                if self.max_n is not None and self.n > self.max_n:
                    v = v[_draw_index(self.n, int(self.max_n), self.seed)]
                # sorted in the record's own precision (float32: half the cost of float64), then
                # widened: the widening is monotone, so the result is that of sorting the float64s
                self._sorted = np.sort(v).astype(np.float64, copy=False)
        return self._sorted

    @property
    def sorted_host(self) -> np.ndarray:
        """`sorted` as float64 numpy on the host (copied from a device once)."""
        y = self.sorted
        if not is_torch(y):
            return y
        if self._sorted_host is None:
            self._sorted_host = y.cpu().numpy()
        return self._sorted_host

    def upper_abs(self, loc: float, k: int) -> np.ndarray:
        """The k largest |x - loc| over every entry, ascending, float64 on the host.

        |x - loc| is formed in the sample's own precision (float32 at least), no float64 copy, and
        only the top k are selected (np.partition or torch.topk on the device), not a full sort.
        """
        key = (float(loc), int(k))
        if key not in self._upper:
            v = self.values
            if is_torch(v):
                torch = sys.modules["torch"]
                w = v if v.dtype in (torch.float32, torch.float64) else v.float()
                a = (w - loc).abs()
                self._upper[key] = np.sort(a.topk(k).values.double().cpu().numpy())
            else:
                self._upper[key] = np.sort(self._top_abs(float(loc), int(k))).astype(np.float64)
        return self._upper[key]

    def _top_abs(self, loc: float, k: int) -> np.ndarray:
        """The k largest |x - loc| (unsorted) in the sample's precision, from one shared pool.

        The first call partitions |x - loc0| once and keeps the entries at or above its kk-th
        largest value t (kk = 2k + 64). For another loc, |x - loc| <= |x - loc0| + |loc - loc0|
        < t + |loc - loc0| for every entry outside the pool, so when the pool's own k-th largest
        |x - loc| is at least that bound its top k are the sample's: the same values, computed the
        same way, as a partition of every entry. Otherwise every entry is partitioned again.
        """
        v = self.values
        w = v if v.dtype in (np.float32, np.float64) else v.astype(np.float32)
        kk = 2 * k + 64
        if self._pool is None and kk < w.size:
            a = np.abs(w - w.dtype.type(loc))
            part = np.partition(a, a.size - kk)[a.size - kk :]
            t = part.min()
            self._pool = (loc, float(t), w[a >= t])
            return np.partition(part, kk - k)[kk - k :]
        if self._pool is not None:
            loc0, t, pool = self._pool
            a = np.abs(pool - w.dtype.type(loc))
            if k <= a.size:
                top = np.partition(a, a.size - k)[a.size - k :]
                # float32 rounding of |x - loc| is below 1 ulp of t: leave a margin of 4 ulps
                bound = t + abs(loc - loc0)
                if float(top.min()) > bound + 4 * float(np.spacing(w.dtype.type(bound))):
                    return top
        a = np.abs(w - w.dtype.type(loc))
        return np.partition(a, a.size - k)[a.size - k :]


def _sample(x: Any, max_n: int | None, seed: int) -> Sample:
    if isinstance(x, Sample) and x.max_n == max_n and x.seed == seed:
        return x
    return Sample(x, max_n, seed)


def _continuous(dist: Family) -> Family:
    """dist itself, or the base of a zero-inflated dist with pi = 0: its cdf, sf and ppf are the
    base's to the last bit (pi * [x >= 0] + 1 * F(x) = F(x)), so the base's statistics serve it."""
    return dist.base if isinstance(dist, ZeroInflated) and dist.pi == 0 else dist


def _evaluate(y: np.ndarray, dist: Family) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(F, log F, log S, Phi or None) of the continuous family `dist` at the sorted points y.

    A symmetric family with `standard_tail` is evaluated exactly at every 32nd point and
    interpolated in between, each block checked (`gradstats.sorted_cdf`, ~1e-12 relative); any
    other by `cdf_logs` at every point, with no Phi (`_w1_sorted` forms it where it can)."""
    if sorted_cdf.supports(dist):
        r = sorted_cdf.sorted_cdf(dist, y)
        return r.cdf, r.log_cdf, r.log_sf, r.phi
    f, log_f, log_s = dist.cdf_logs(y)
    return f, log_f, log_s, None


def _base(dist: Family) -> Family:
    """The family whose cdf is evaluated at the sample: a zero-inflated model's base, else dist."""
    return dist.base if isinstance(dist, ZeroInflated) else dist


@functools.lru_cache(maxsize=8)
def _ecdf_steps(n: int) -> np.ndarray:
    """i / n for i = 0..n (read-only, kept per sample size: KS and W1 use it per family)."""
    out = np.arange(0.0, n + 1) / n
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def _ad_weights(n: int) -> np.ndarray:
    """2i - 1 for i = 1..n as float64 (read-only): the Anderson-Darling weights."""
    out = 2.0 * np.arange(1, n + 1) - 1.0
    out.setflags(write=False)
    return out


def _ks_sorted(y: np.ndarray, dist: Family, cdf: np.ndarray | None = None) -> float:
    """KS distance of the sorted sample y; `cdf` = F(y) when already evaluated (for a zero-inflated
    model, the base's F(y))."""
    if not isinstance(dist, ZeroInflated):
        f = dist.cdf(y) if cdf is None else cdf
        n = y.size
        # D+ and D- as scipy.stats.ks_1samp forms them
        ecdf = _ecdf_steps(n)
        d_plus = (ecdf[1:] - f).max()
        d_minus = (f - ecdf[:-1]).max()
        return float(d_plus if d_plus > d_minus else d_minus)
    u, counts = np.unique(y, return_counts=True)
    fn_right = np.cumsum(counts) / y.size
    fn_left = fn_right - counts / y.size
    if cdf is None:
        f_right = dist.cdf(u)
    else:  # `cdf` = the base's F(y): take it at the first of each run of ties
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        f_right = dist.pi * (u >= 0) + (1 - dist.pi) * cdf[first]
    f_left = f_right - dist.pi * (u == 0)
    return float(max(np.abs(fn_right - f_right).max(), np.abs(f_left - fn_left).max()))


def _ad_sorted(y: np.ndarray, dist: Family, logs: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """AD statistic of the sorted sample y; `logs` = (log F(y), log S(y)) when already evaluated
    (for a zero-inflated model, the base's at every point of y)."""
    if isinstance(dist, ZeroInflated):
        keep = y != 0
        y, dist = y[keep], dist.base
        if y.size == 0:
            return math.nan
        if logs is not None:  # the base's logs at every point of the sample
            logs = (logs[0][keep], logs[1][keep])
    log_f, log_s = dist.cdf_logs(y)[1:] if logs is None else logs
    n = y.size
    # sum_i (2i - 1) (log F_i + log S_{n+1-i}) as one dot product with cached weights
    return float(-n - np.dot(_ad_weights(n), log_f + log_s[::-1]) / n)


def _cdf_integral(dist: Family, x: np.ndarray) -> np.ndarray | None:
    """Phi(x) = int_{-inf}^x F(t) dt = E[(x - X)^+] in closed form (None without `standard_tail`).

    Phi = scale psi(|z|) + max(x - loc, 0): below loc the tail integral int_{-inf}^x F, above it
    x - E X + E[(X - x)^+], with psi(u) = E[(Z - u)^+] of the standardized law (`Family.standard_tail`:
    Normal phi(u) - u Phi(-u), Laplace e^-u / 2, GenNorm Gamma(2/b) Q(2/b, u^b) / (2 Gamma(1/b)) -
    u Q(1/b, u^b) / 2); for a zero-inflated model pi max(x, 0) + (1 - pi) Phi_base(x).
    """
    if isinstance(dist, ZeroInflated):
        base = _cdf_integral(dist.base, x)
        return None if base is None else dist.pi * np.maximum(x, 0.0) + (1 - dist.pi) * base
    if not sorted_cdf.supports(dist):
        return None
    x = np.asarray(x, dtype=np.float64)
    psi = dist.standard_tail(np.abs(x - dist.loc) / dist.scale)[3]
    return dist.scale * np.maximum(psi, 0.0) + np.maximum(x - dist.loc, 0.0)


def _w1_sorted(y: np.ndarray, dist: Family, cdf: np.ndarray | None = None,
               base_phi: np.ndarray | None = None) -> float:
    """W1 = int |F_n(x) - F(x)| dx between the empirical cdf of the sorted sample y and the model.

    Exact for the step function F_n: with Phi = int F (`_cdf_integral`, closed form) each gap
    [y_i, y_i+1] where F_n = i / n contributes |D_i|, D_i = (i / n)(y_i+1 - y_i) - (Phi(y_i+1) -
    Phi(y_i)), or, where F crosses i / n inside it (at x* = F^-1(i / n), evaluated only there),
    2 [(i / n)(x* - y_i) - (Phi(x*) - Phi(y_i))] - D_i; the ends add Phi(y_1) and E[(X - y_n)^+].
    No quantile is needed at the n sample points (the inverse incomplete gamma was most of the
    cost of the quantile form). `cdf` = F(y) of a continuous family (of a zero-inflated model's base)
    when already evaluated, `base_phi` its Phi (`_evaluate`). A family without a closed form
    falls back to `_w1_quantiles`.
    """
    zi = isinstance(dist, ZeroInflated)
    if not sorted_cdf.supports(_base(dist)):  # no closed-form Phi
        return _w1_quantiles(y, dist)
    if zi:  # one base cdf serves F and Phi
        base_f = dist.base.cdf(y) if cdf is None else cdf
        f = dist.pi * (y >= 0) + (1 - dist.pi) * base_f
        f_left = f - dist.pi * (y == 0)  # F(y-)
    else:
        base_f = f = f_left = dist.cdf(y) if cdf is None else cdf
    if base_phi is None:
        phi = _cdf_integral(dist, y)
    else:
        phi = dist.pi * np.maximum(y, 0.0) + (1 - dist.pi) * base_phi if zi else base_phi
    n = y.size
    c = _ecdf_steps(n)[1:-1]  # F_n on [y_i, y_i+1)
    gap = np.diff(y)
    d = c * gap - np.diff(phi)
    total = np.abs(d)
    cross = np.flatnonzero((f[:-1] < c) & (f_left[1:] > c) & (gap > 0))
    if cross.size:
        with np.errstate(invalid="ignore"):
            xs = np.clip(dist.ppf(c[cross]), y[cross], y[cross + 1])
        part = c[cross] * (xs - y[cross]) - (_cdf_integral(dist, xs) - phi[cross])
        total[cross] = np.abs(2 * part - d[cross])
    mean = (1 - dist.pi) * dist.loc if isinstance(dist, ZeroInflated) else dist.loc
    right = mean - y[-1] + phi[-1]  # E[(X - y_n)^+]
    return float(phi[0] + total.sum() + max(right, 0.0))


def _w1_quantiles(y: np.ndarray, dist: Family) -> float:
    """W1 between the sorted sample y and the model quantiles F^-1((i - 1/2) / n) (the fallback of
    `_w1_sorted` for a family without a closed-form `_cdf_integral`, e.g. Student t).

    The integral sum_j |U(m_j) - V(m_j)| (m_{j+1} - m_j) over the merged values m, term by term as
    `scipy.stats.wasserstein_distance` forms it (the same float64 numbers, the same dot), with the
    empirical cdfs U and V counted in one pass over the merge of the two sorted inputs instead of
    re-sorting them and binary-searching every merged value.
    """
    q = dist.ppf((np.arange(y.size) + 0.5) / y.size)
    n = y.size
    both = np.concatenate((y, q))
    order = np.argsort(both, kind="stable")  # two sorted runs: one merge
    merged = both[order]
    deltas = np.diff(merged)
    # U(m_j) = #{y <= m_j} / n: the y's among m_0..m_j, counted to the end of m_j's group of ties
    u_count = np.cumsum(order < n)
    new_value = deltas != 0
    if new_value.all():
        v_count = np.arange(1, 2 * n + 1) - u_count
    else:
        group_end = np.flatnonzero(np.r_[new_value, True])[np.r_[0, np.cumsum(new_value)]]
        u_count = u_count[group_end]
        v_count = group_end + 1 - u_count
    u_cdf, v_cdf = u_count[:-1] / n, v_count[:-1] / q.size
    if hasattr(np, "vecdot"):  # scipy's own choice of the dot (numpy >= 2)
        return float(np.vecdot(np.abs(u_cdf - v_cdf), deltas))
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))


def ks_statistic(x: Any, dist: Family, max_n: int | None = MAX_N, seed: int = 0) -> float:
    """Kolmogorov-Smirnov distance D = sup_x |F_n(x) - F(x)| between the sample and the model.

    Continuous families: D = max(D+, D-) of `scipy.stats.kstest(x, dist.cdf)`. A zero-inflated
    model has a jump of pi at 0, where kstest's continuity assumption fails, so D is taken over
    both one-sided limits at each distinct sample value: max(F_n(u) - F(u), F(u-) - F_n(u-)) and
    their negatives.
    """
    s = _sample(x, max_n, seed)
    if is_torch(s.sorted):
        return distances(s, dist, max_n, seed)["ks"]
    d = _continuous(dist)
    return _ks_sorted(s.sorted, d, _evaluate(s.sorted, _base(d))[0])


def anderson_darling(x: Any, dist: Family, max_n: int | None = MAX_N, seed: int = 0) -> float:
    """Anderson-Darling statistic A^2 = -n - (1/n) sum_i (2i - 1) [log F(y_i) + log S(y_{n+1-i})].

    y is the sorted sample, S = 1 - F. The statistic weights the tails by 1 / (F (1 - F)); it is
    computed with the family's `logcdf` / `logsf` so that a sample point far out in a tail the
    model says is impossible gives a large finite value instead of the log(0) = inf that
    `statsmodels.stats.diagnostic.anderson_statistic` (which evaluates log(cdf)) returns there.
    (scipy.stats.anderson only tests its own fitted families.) For a zero-inflated model the
    statistic is that of the non-zero entries against the continuous component, since A^2 is
    defined for continuous F.
    """
    s = _sample(x, max_n, seed)
    if is_torch(s.sorted):
        return distances(s, dist, max_n, seed)["ad"]
    d = _continuous(dist)
    return _ad_sorted(s.sorted, d, _evaluate(s.sorted, _base(d))[1:3])


def wasserstein1(x: Any, dist: Family, max_n: int | None = MAX_N, seed: int = 0) -> float:
    """Wasserstein-1 distance W1 = integral |F_n(x) - F(x)| dx between the sample's empirical cdf
    and the model, in the units of x.

    Exact for Normal, Laplace, GenNorm and their zero-inflated versions (closed-form integrals of
    F, see `_w1_sorted`); other families: the distance to the model quantiles F^-1((i - 1/2) / n),
    i = 1..n, as `scipy.stats.wasserstein_distance` computes it (`_w1_quantiles`). (Until issue
    13's round 2 every family used the quantile form: the distance to an n-point discretization of
    the model, off the exact W1 by O(1/n) relative, 0.5-4 % at n = 400.)
    """
    d = _continuous(dist)
    s = _sample(x, max_n, seed)
    if is_torch(s.sorted):
        return distances(s, dist, max_n, seed)["w1"]
    y = s.sorted
    # F and Phi as `distances` evaluates them, so that both give the same number to the last bit
    f, _, _, phi = _evaluate(y, _base(d))
    return _w1_sorted(y, d, f, phi)


def distances(x: Any, dist: Family, max_n: int | None = MAX_N, seed: int = 0) -> dict[str, float]:
    """ks, ad and w1 in one go: one sorted subsample, and one evaluation of F, log F, log S and Phi
    at its points (`_evaluate`: interpolated along the sample for GenNorm, `gradstats.sorted_cdf`)
    serving all three (a zero-inflated model's base at every point). Given a `Sample`,
    the result is kept on it per model (a zero-inflated model with pi = 0 counts as its base)."""
    s = _sample(x, max_n, seed)
    d = _continuous(dist)
    key = (d.name, tuple(d.params.items()))  # kept on the sample: a model met twice is measured once
    if key not in s._distances and is_torch(s.sorted) and goodness_torch.supports(d):
        s._distances[key] = goodness_torch.device_distances(s.sorted, d, _cdf_integral)
    if key not in s._distances:
        y = s.sorted_host
        # one evaluation of the continuous family (a zero-inflated model's base) serves all three
        f, log_f, log_s, phi = _evaluate(y, _base(d))
        s._distances[key] = {"ks": _ks_sorted(y, d, f), "ad": _ad_sorted(y, d, (log_f, log_s)),
                             "w1": _w1_sorted(y, d, f, phi)}
    return dict(s._distances[key])


def nll_bits(x: Any, dist: Family, chunk: int = 1 << 18) -> float:
    """Mean negative log-likelihood in bits per entry: -(1/n) sum_i log2 f(x_i).

    For a continuous family this is a differential cross-entropy: it depends on the unit of x,
    and only differences between models on the same sample are meaningful (the difference is the
    per-entry log-likelihood ratio in bits). A zero-inflated model counts log2 pi for each exact 0.
    """
    v = x.values if isinstance(x, Sample) else _finite_vector(x)
    tot = 0.0
    for i in range(0, len(v), chunk):
        c = v[i : i + chunk]
        c = c.double().cpu().numpy() if is_torch(c) else np.asarray(c, np.float64)
        tot += float(dist.logpdf(c).sum())
    return -tot / (len(v) * math.log(2.0))


def tail_quantiles(x: Any, loc: float, ps: tuple[float, ...] = TAIL_PS) -> dict[float, float]:
    """t_p = quantile(|x - loc|, 1 - p) (numpy's default linear interpolation) for each p.

    Only the top n max(p) + 2 order statistics of |x - loc| are selected (`Sample.upper_abs`).
    """
    s = x if isinstance(x, Sample) else Sample(x, None)
    n = s.n
    k = min(n, int(math.ceil(n * max(ps))) + 2)
    top = s.upper_abs(loc, k)
    out = {}
    for p in ps:
        h = (n - 1) * (1 - p)  # linear interpolation position in the full ascending order
        j = int(math.floor(h))
        lo = top[j - (n - k)]
        hi = top[min(j + 1, n - 1) - (n - k)]
        out[p] = float(lo + (h - j) * (hi - lo))
    return out


def tail_error(x: Any, dist: Family, loc: float | None = None, ps: tuple[float, ...] = TAIL_PS,
               min_count: int = TAIL_MIN_COUNT) -> dict[float, float]:
    """Tail accuracy: log10 of the model's over empirical two-sided tail probability, per p.

    t_p = quantile(|x - loc|, 1 - p) is the empirical threshold that a fraction p of the entries
    exceeds; the model predicts P(|X - loc| > t_p) = S(loc + t_p) + F(loc - t_p), and the error is
    log10(P_model / p): 0 is exact, +1 means the model puts 10x too much mass beyond t_p (tails
    too heavy), -1 ten times too little (too light, the usual failure of Normal on gradients).
    Only p with n p >= min_count is reported; others are NaN (the sample does not resolve them).
    loc defaults to the model's location.
    """
    s = x if isinstance(x, Sample) else Sample(x, None)
    n = s.n
    loc = float(dist.loc if loc is None else loc)
    resolved = tuple(p for p in ps if n * p >= min_count)
    out = {p: math.nan for p in ps}
    if not resolved:
        return out
    for p, t in tail_quantiles(s, loc, resolved).items():
        model = float(dist.sf(loc + t) + dist.cdf(loc - t))
        out[p] = math.log10(model / p) if model > 0 else -math.inf
    return out


def tail_column(p: float) -> str:
    """DataFrame column name of the tail error at p, e.g. 'tail_log10_1e-03'."""
    return f"tail_log10_{p:.0e}"


def qq_data(x: Any, dist: Family, n_points: int = 200, max_n: int | None = None,
            seed: int = 0) -> pd.DataFrame:
    """Quantile-quantile data: columns p, empirical = quantile(x, p), model = F^-1(p).

    The probabilities are spaced evenly in log-odds from 1/(n+1) to n/(n+1), so both tails get
    as many points as the bulk.
    """
    y = _sample(x, max_n, seed).sorted_host
    n = y.size
    lim = math.log(n) if n > 1 else 1.0
    p = 1.0 / (1.0 + np.exp(-np.linspace(-lim, lim, n_points)))
    return pd.DataFrame({"p": p, "empirical": np.quantile(y, p), "model": dist.ppf(p)})


def goodness_of_fit(x: Any, dist: Family, loc: float | None = None, max_n: int | None = MAX_N,
                    seed: int = 0, ps: tuple[float, ...] = TAIL_PS) -> dict[str, float]:
    """All the scalar metrics of this module in one dict: ks, ad, w1, nll_bits, tail_log10_<p>."""
    s = _sample(x, max_n, seed)
    out = {**distances(s, dist, max_n, seed), "nll_bits": nll_bits(s, dist)}
    out.update({tail_column(p): v for p, v in tail_error(s, dist, loc, ps).items()})
    return out
