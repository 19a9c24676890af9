"""A large sample compressed once around a centre, for the free-loc GenNorm search at beta < 1.

The loc search of `gradstats.gennorm_loc` evaluates Q(m) = sum |x - m|^beta ~15-30 times over
every entry (a bounded Brent search, the data-point polish, the shape updates between them). Every
m it visits lies within a bracket [m0 - h, m0 + h] known from a subsample, so one pass can compress
the entries once (`CentreBins`) and every later evaluation costs O(bins):

- entries with |x - m0| >= R (R = 1.25 h) go to bins in |x - m0| 0.4 % wide at most (256 per
  octave, from the float32 bit pattern) and per sign, holding their count, mean and sum of
  squared deviations from the mean;
- the entries of the core |x - m0| < R are kept exactly, sorted, and grouped in linear bins of
  width h / `CORE_PER_H` with the same three statistics.

A bin of n entries with mean u (relative to the evaluation point) and squared deviations V adds
n g(u) + V g''(u) / 2 to sum g(x_i - m) (Taylor to second order around its mean; the first order
vanishes), where g(u) = |u|^beta (log |u|)^j for T_j. The residual is of fourth order in the bin
width over |u| (the third is the bin's skewness, nearly zero): below 1e-9 relative for the far
bins, whose width is at most 0.4 % of |x - m0|. Core bins within `WINDOW` bin widths of m are summed
entry by entry, so the cusps of Q at the data points near m, where the maximum of the likelihood
sits, are exact. The solver (`gradstats.gennorm_solver`) runs its loc search and shape updates on
these sums and then computes the scale and the reported log-likelihood at the loc found from one
exact float64 pass over every entry (T0); beta's convergence test there and its standard error use
the binned T1, T2. `gradstats.gennorm_loc.loc_search` steps its Brent search on these sums too.
"""
from __future__ import annotations

import math

import numpy as np

from gradstats.arrays import CHUNK, TINY

CORE_RADIUS = 1.25
"""Core radius R in units of the bracket half-width h: for |x - m0| >= R and |m - m0| <= h a far
bin's width is below 1.4 % of its distance |x - m| to the evaluation point."""
CORE_PER_H = 256
"""Linear core bins per bracket half-width h."""
WINDOW = 8
"""Core bins within this many bin widths of the evaluation point are summed entry by entry."""


class CentreBins:
    """The entries of x compressed around m0 for sums over |x - m| / c with |m - m0| <= h.

    All offsets are in units of c: `d` = (x - m0) / c. `sums(e, beta, order)` gives T_0..T_order
    with T_j = sum a^beta (log a)^j, a = |x - (m0 + c e)| / c, as `gennorm_solver.gennorm_sums`
    forms them (a clamped at 1e-300); `polish_q` the exact-to-rounding Q at data points near e.
    """

    def __init__(self, x: np.ndarray, m0: float, h: float, c: float):
        self.m0, self.c, self.n = float(m0), float(c), len(x)
        self.h = h / c
        # the bin of an entry only has to be narrow, not exact (its statistics are): the index is
        # the float32 bit pattern of |x - m0| shifted right by 15 (exponent and the top 8 mantissa
        # bits, 256 bins per octave, each at most 0.4 % wide), counted from that of R; the count,
        # mean and squares come from the exact float64 offsets. R is rounded down to the edge of
        # its bin, so that the core is exactly the entries of the bins below it
        base = int(np.array(np.float32(CORE_RADIUS * h)).view(np.int32)) >> 15
        r32 = np.array(base << 15, dtype=np.int32).view(np.float32)
        self.radius = r = float(r32) / c
        m32 = np.float32(m0)
        # every chunk's bins in one index range: the largest offset is that of max or min
        lo, hi = float(x.min()), float(x.max())
        top = np.float32(max(abs(np.float32(hi) - m32), abs(np.float32(lo) - m32), r32))
        n_far = 2 * ((int(np.array(top).view(np.int32)) >> 15) - base + 2)
        counts, sums, squares = np.zeros(n_far), np.zeros(n_far), np.zeros(n_far)
        core_parts = []
        for i in range(0, len(x), CHUNK):
            xc = x[i : i + CHUNK].astype(np.float32, copy=False)
            a32 = xc - m32
            below = a32 < 0  # odd bins: below m0
            np.abs(a32, out=a32)
            k = a32.view(np.int32) >> 15
            k -= base - 1
            np.maximum(k, 0, out=k)  # the core: bins 0 and 1, dropped below
            k <<= 1
            k += below
            k = k.astype(np.intp)  # bincount's own index type: converted once, not in each of three
            d = xc.astype(np.float64)
            d -= m0
            core_parts.append(d[a32 < r32])
            counts += np.bincount(k, minlength=n_far)
            sums += np.bincount(k, weights=d, minlength=n_far)
            d *= d
            squares += np.bincount(k, weights=d, minlength=n_far)
        counts[:2] = 0
        keep = counts > 0
        n_far, s1, s2 = counts[keep], sums[keep], squares[keep]
        mean = s1 / n_far
        s2 = (s2 - s1 * mean) / (c * c)
        mean /= c
        self.far = (n_far, mean, np.maximum(s2, 0.0))
        core = np.concatenate(core_parts) if core_parts else np.zeros(0)
        del core_parts
        core.sort()
        core /= c
        # linear core bins; V about each bin's mean from the entries themselves (no cancellation)
        w = self.h / CORE_PER_H
        n_bins = int(math.ceil(2 * r / w))
        edges = -r + w * np.arange(n_bins + 1)
        bounds = np.searchsorted(core, edges)
        bounds[0], bounds[-1] = 0, len(core)
        cnt = np.diff(bounds).astype(np.float64)
        cs = np.concatenate([[0.0], np.cumsum(core)])
        with np.errstate(invalid="ignore", divide="ignore"):
            cmean = (cs[bounds[1:]] - cs[bounds[:-1]]) / cnt
        del cs
        dev = np.repeat(np.nan_to_num(cmean), cnt.astype(np.int64))
        np.subtract(core, dev, out=dev)
        dev *= dev
        cs2 = np.concatenate([[0.0], np.cumsum(dev)])
        del dev
        self.bin_width, self.edges = w, edges
        # the distinct core values (offsets / c) and their multiplicities: ties (the exact zeros of
        # a sparse layer sitting on the loc) are summed once per value in the windows
        first = np.flatnonzero(np.r_[True, core[1:] != core[:-1]])
        self.values = core[first]
        self.ties = np.diff(np.r_[first, len(core)]).astype(np.float64)
        self.value_bounds = np.searchsorted(first, bounds)
        self.core_bins = (cnt, cmean, cs2[bounds[1:]] - cs2[bounds[:-1]])
        self._binned_at: tuple | None = None
        self._logs_at: tuple | None = None

    def _window(self, e: float, extra: float = 0.0) -> tuple[int, int]:
        """Core bins [lo, hi) summed entry by entry for an evaluation at e (and within `extra` of it)."""
        half = WINDOW * self.bin_width + extra
        lo = int(np.searchsorted(self.edges, e - half, side="right")) - 1
        hi = int(np.searchsorted(self.edges, e + half, side="left"))
        return max(lo, 0), min(max(hi, 0), len(self.edges) - 1)

    def _binned(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The far bins and the core bins outside [lo, hi), non-empty ones only (kept for the last
        window)."""
        if self._binned_at is not None and self._binned_at[0] == (lo, hi):
            return self._binned_at[1]
        cnt, mean, v = self.core_bins
        outside = np.ones(len(cnt), bool)
        outside[lo:hi] = False
        outside &= cnt > 0
        n_far, m_far, v_far = self.far
        out = (np.concatenate([n_far, cnt[outside]]), np.concatenate([m_far, mean[outside]]),
               np.concatenate([v_far, v[outside]]))
        self._binned_at = ((lo, hi), out)
        return out

    def _logs(self, e: float) -> tuple[np.ndarray, ...]:
        """For an evaluation at e: the binned counts, log |u| of their means, V / (2 u^2), and log a
        of the window's distinct values with their multiplicities. Kept for the last e: a Newton
        run in beta evaluates one e at many shapes, which then costs one exp per bin."""
        if self._logs_at is not None and self._logs_at[0] == e:
            return self._logs_at[1]
        lo, hi = self._window(e)
        n, mean, v = self._binned(lo, hi)
        u = np.maximum(np.abs(mean - e), TINY)
        lg = np.log(u)
        half_v = 0.5 * v / (u * u)
        va, vb = self.value_bounds[lo], self.value_bounds[hi]
        la = np.log(np.maximum(np.abs(self.values[va:vb] - e), TINY))
        logs = (n, lg, half_v, la, self.ties[va:vb])
        self._logs_at = (e, logs)
        return logs

    def sums(self, e: float, beta: float, order: int = 2) -> list[float]:
        """[T_0, ..., T_order] at m = m0 + c e (order 0 or 2)."""
        n, lg, half_v, la, ties = self._logs(e)
        p = np.exp(beta * lg)  # |u|^b
        p2 = p * half_v  # V |u|^(b - 2) / 2
        bb = beta * (beta - 1.0)
        pa = np.exp(beta * la) * ties
        out = [float(n @ p + bb * p2.sum()) + float(pa.sum())]
        if order >= 2:
            out.append(float((n * p) @ lg + p2 @ (bb * lg + 2 * beta - 1.0)) + float(pa @ la))
            out.append(float((n * p) @ (lg * lg) + p2 @ ((bb * lg + 4 * beta - 2.0) * lg + 2.0))
                       + float(pa @ (la * la)))
        return out

    def polish_q(self, e: float, beta: float, w: float) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, Q at each): the data points within w of e (and e itself), Q = T_0 there.

        The bins outside the window enter through a Taylor series in the shift from e (order 4;
        the shift is at most w, below 1 / WINDOW of their distance), the window entry by entry.
        """
        lo, hi = self._window(e, extra=w)
        a, b = np.searchsorted(self.values, [e - w, e + w], side="left")
        cand = np.unique(np.concatenate([[e], self.values[a:b]]))
        n, mean, v = self._binned(lo, hi)
        u = mean - e
        au = np.maximum(np.abs(u), TINY)
        # d^j/du^j |u|^b = b (b - 1) ... (b - j + 1) |u|^(b - j) sign(u)^j = fall_j |u|^b (1 / u)^j,
        # j = 0..6: one exp and log for all seven, then products
        fall = np.cumprod(np.r_[1.0, beta - np.arange(6)])
        q = np.exp(beta * np.log(au))
        inv = np.sign(u) / au
        n_q, v_q = np.empty(7), np.empty(7)  # n @ |u|^b u^-j and v @ |u|^b u^-j
        for j in range(7):
            n_q[j], v_q[j] = n @ q, v @ q
            q = q * inv
        coef = [float(fall[j] * n_q[j] + 0.5 * fall[j + 2] * v_q[j + 2]) / math.factorial(j)
                for j in range(5)]
        delta = cand - e
        q = sum(cj * (-delta) ** j for j, cj in enumerate(coef))
        va, vb = self.value_bounds[lo], self.value_bounds[hi]
        q += candidate_power_sums(self.values[va:vb], cand, beta, self.ties[va:vb], 1 << 16)
        return cand, q


def candidate_power_sums(points: np.ndarray, cand: np.ndarray, beta: float, weights: np.ndarray | None = None,
                         block_entries: int = 1 << 16) -> np.ndarray:
    """sum_j w_j |points_j - cand_i|^beta for every candidate i (w = 1 without `weights`), float64.

    |d|^beta as exp(beta log |d|), a third of the cost of d ** beta (|0|^beta = exp(-inf) = 0), over
    blocks of candidates whose (candidates, points) table holds about `block_entries` float64s.
    """
    out = np.empty(cand.size)
    step = max(1, block_entries // max(points.size, 1))
    with np.errstate(divide="ignore"):
        for i in range(0, cand.size, step):
            d = np.abs(points[None, :] - cand[i : i + step, None])
            np.log(d, out=d)
            d *= beta
            np.exp(d, out=d)
            out[i : i + step] = d.sum(axis=1) if weights is None else d @ weights
    return out
