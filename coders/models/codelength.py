"""Code-length-optimal codebooks: a family's parameters fitted to the symbols under the quantizer's cells.

A codebook built from the continuous MLE of the values is not the shortest code for the
quantized symbols: an atom of exact zeros sends GenNorm's beta to its bound, and wide bins make
the likelihood of the values a poor proxy for the probability of the bins. The code-length fit
minimizes what the coder pays instead (minimum cross-entropy, i.e. maximum discretized
likelihood; Rissanen's minimum description length for a fixed parameter cost):

    theta* = argmin_theta  -sum_k c_k log2 q_k(theta),
    q(theta) = floor_normalize([P_theta(cell_k)]_{k=lo..hi}, escape mass),

with c the symbol histogram (one bincount) over the model's table and cell_k the quantizer's own
cells (`Quantized.cells`: deterministic or stochastic rounding, block scales, Lloyd-Max or
entropy-constrained thresholds): O(alphabet) per evaluation. The search (Nelder-Mead over log
shape, loc / scale0, log scale (GenNorm: beta log(scale / scale0), along which a spike's optimum
lies straight) and logit pi; `nelder_mead` evaluates each iteration's trial
points in one pass, `SymbolCounts.bits_batch`) starts from the best of: binned moments of the
histogram itself for Normal, Laplace and GenNorm on deterministic cells (`binned_start`: mean or
median, Sheppard-corrected sd, mean absolute deviation, GenNorm's beta from the moment ratio),
the continuous fit (`gradstats.fit` of a value subsample) for the other families and where the
histogram gives no start, and, for nested families, the code-length fits of the families they
contain (Laplace = GenNorm(beta=1), Normal = GenNorm(beta=2), base = ZeroInflated(pi=0)).
The final model is chosen among the optimum and those nested points by the bits of the table a
decoder rebuilds from bf16 parameters, so GenNorm's codebook is never worse than Laplace's or
Normal's beyond the rounding of its parameters, and a zero-inflated one never worse than its base.

The objective evaluates the families' survival functions in closed form with `scipy.special`
(the frozen `gradstats.families` objects cost ~1 ms each to build, 100x the evaluation itself);
`cell_probs` is tested against `Family.interval_probs`, which builds the final table.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special as sc

from coders.models.histogram import SymbolHistogram
from coders.models.table import PROB_FLOOR, floor_normalize_valid
from gradstats.families import GenNorm, Laplace, Normal, StudentT, ZeroInflated, family_name

FITS = ("codelength", "values")
"""How a codebook's family is fitted: to the symbols under the cells (default), or the continuous
MLE of the model-domain values (what the fit stage reports)."""
BETA_RANGE = (0.05, 50.0)
DF_RANGE = (0.05, 1.0e4)
SMALL_N = 30
"""Fewer symbols than this: the fit is flagged (degenerate)."""
SHAPE = {"gennorm": "beta", "t": "df"}
CLASSES = {"normal": Normal, "laplace": Laplace, "gennorm": GenNorm, "t": StudentT}
NESTED = {"gennorm": ("laplace", "normal")}
"""Families whose code-length optimum is also a point of the key family (a start and a candidate)."""
DEGENERATE_MARKERS = ("at_lower_bound", "at_upper_bound", "small_sample", "not_converged", "degenerate")
"""Flags with one of these mark a degenerate fit: a shape or the scale on its bound, too few
symbols, no convergence. Its codebook still codes (and competes in `coders.selection`); its
parameters describe no density."""


def _survival(base: str, z: np.ndarray, shape: float | None) -> np.ndarray:
    """S(z) = P(Z > z) of the standardized family, z >= 0 (all four are symmetric about loc)."""
    if base == "normal":
        return sc.ndtr(-z)
    if base == "laplace":
        return 0.5 * np.exp(-z)
    if base == "gennorm":
        with np.errstate(over="ignore"):  # z^shape = inf far out: Q(1/shape, inf) = 0, as it should be
            return 0.5 * sc.gammaincc(1.0 / shape, z**shape)
    return sc.stdtr(shape, -z)


def cell_probs(family: str, params: dict[str, float], edges: np.ndarray) -> np.ndarray:
    """P(edges[i] < X <= edges[i+1]) for `family` (canonical name, 'zi-' allowed) with `params`.

    Cells above loc are S(a) - S(b), below loc S(-b) - S(-a), a cell around loc 1 - S(-a) - S(b)
    (S the standardized survival function), so tail cells keep their relative accuracy. The
    zero-inflated atom goes to the cell (e_i, e_{i+1}] that holds 0, as `ZeroInflated`.
    """
    zi = family.startswith("zi-")
    base = family.removeprefix("zi-")
    shape = params.get(SHAPE.get(base, ""), None)
    z = (edges - params["loc"]) / params["scale"]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        s = _survival(base, np.abs(z), shape)  # one special-function call for all edges
    sa, sb = s[:-1], s[1:]
    out = np.where(z[:-1] >= 0, sa - sb, np.where(z[1:] <= 0, sb - sa, 1.0 - sa - sb))
    out = np.clip(out, 0.0, 1.0)
    out[np.isnan(out)] = 0.0
    if zi:
        pi = params["pi"]
        out *= 1.0 - pi
        i = int(np.searchsorted(edges, 0.0, side="left")) - 1
        if 0 <= i < out.size:
            out[i] += pi
    return out


class _ClosedFormCdf:
    """The cdf of `family` at `params` in closed form: what stochastic cells integrate."""

    def __init__(self, family: str, params: dict[str, float]) -> None:
        self.family, self.params = family, params

    def cdf(self, x: np.ndarray) -> np.ndarray:
        base = self.family.removeprefix("zi-")
        shape = self.params.get(SHAPE.get(base, ""), None)
        z = (np.asarray(x, dtype=np.float64) - self.params["loc"]) / self.params["scale"]
        F = np.where(z < 0, _survival(base, np.abs(z), shape), 1.0 - _survival(base, np.abs(z), shape))
        if self.family.startswith("zi-"):
            pi = self.params["pi"]
            F = (1.0 - pi) * F + pi * (np.asarray(x) >= 0)
        return F


def make_family(family: str, params: dict[str, float]) -> Any:
    """The `gradstats.families` object of canonical `family` with `params`."""
    base = family.removeprefix("zi-")
    kw = {k: v for k, v in params.items() if k != "pi"}
    dist = CLASSES[base](**kw)
    return ZeroInflated(dist, params["pi"]) if family.startswith("zi-") else dist


def family_params(dist: Any) -> dict[str, float]:
    """A family object's parameters as a plain dict (the optimizer's starting point)."""
    return {k: float(v) for k, v in dist.params.items()}


@dataclass
class SymbolCounts:
    """The symbol histogram over a model's table [lo, hi] (+ escapes) and the cells it lives on."""

    lo: int
    hi: int
    counts: np.ndarray
    """Counts of lo..hi, then the number of symbols outside (escapes); `n` their sum."""
    cells: Any
    edges: np.ndarray | None
    """Model-domain boundaries of lo..hi (None for stochastic cells, whose law is a convolution)."""

    @classmethod
    def of(cls, symbols: Any, quantized: Any, lo: int, hi: int) -> SymbolCounts:
        """The counts of `symbols` (an array or a `SymbolHistogram`) over [lo, hi] on the cells of
        `quantized`."""
        if isinstance(symbols, SymbolHistogram):
            inside, outside = symbols.range_counts(lo, hi)
            counts = np.append(inside.astype(np.float64), float(outside))
        else:
            idx = symbols - lo
            inside = (idx >= 0) & (idx <= hi - lo)
            counts = np.bincount(idx[inside], minlength=hi - lo + 1).astype(np.float64)
            counts = np.append(counts, float(symbols.size - int(inside.sum())))
        cells = quantized.cells
        edges = None if getattr(cells, "stochastic", False) else cells.edges(lo, hi)
        return cls(lo, hi, counts, cells, edges)

    def __post_init__(self) -> None:
        self.n = int(self.counts.sum())
        self._present = np.flatnonzero(self.counts)
        self._present_counts = self.counts[self._present]
        # the cell (e_i, e_i+1] that holds 0, where a zero-inflated atom goes (as `cell_probs`)
        i = int(np.searchsorted(self.edges, 0.0, side="left")) - 1 if self.edges is not None else -1
        self._zero_cell = i if 0 <= i < self.counts.size - 1 else None

    @property
    def cell_width(self) -> float:
        """Width of the most frequent finite cell (a density far narrower than it is a spike)."""
        if self.edges is None:
            return float(getattr(self.cells, "step", 1.0))
        w = np.diff(self.edges)
        ok = np.isfinite(w) & (w > 0)
        if not ok.any():
            return 1.0
        c = np.where(ok, self.counts[:-1], -1.0)
        return float(w[int(np.argmax(c))])

    def probs(self, family: str, params: dict[str, float]) -> np.ndarray:
        """P(symbol k), k = lo..hi, under `family` with `params` (unfloored, no escape entry)."""
        if self.edges is not None:
            return cell_probs(family, params, self.edges)
        # the triangle-convolved law of stochastic rounding on a coarse grid while searching (the
        # final table uses the cells' own fine grid)
        law = self.cells.probs(_ClosedFormCdf(family, params), self.lo, self.hi, sub=16)
        return np.asarray(law, dtype=np.float64)

    def bits(self, family: str, params: dict[str, float]) -> float:
        """-sum_k c_k log2 q_k under the floored table with escape mass (bits per symbol)."""
        if not params["scale"] > 0:  # e.g. a spike's scale below bf16's range: not sendable
            return math.inf
        p = self.probs(family, params)
        q = np.empty(p.size + 1)
        if self.edges is not None:  # cell_probs: already in [0, 1], NaN set to 0
            q[:-1] = p
        else:
            q[:-1] = np.where(np.isfinite(p), np.maximum(p, 0.0), 0.0)
        q[-1] = max(0.0, 1.0 - float(q[:-1].sum()))
        return float(np.dot(self.counts, -np.log2(floor_normalize_valid(q)))) / max(self.n, 1)

    def bits_batch(self, family: str, params: dict[str, np.ndarray]) -> np.ndarray:
        """`bits` of B parameter sets (arrays of B) at once: on deterministic cells one pass over a
        (B, cells) table, which costs about one evaluation on these small alphabets.

        Cell k gets G(z_k+1) - G(z_k) with G(z) = sign(z) (1/2 - S(|z|)) = F(z) - 1/2 (one
        special-function call, no branches): exact to ~1e-16 absolute, i.e. to 1e-9 relative for
        every probability above the 2^-24 floor (`cell_probs` keeps the tails' relative accuracy
        for the final tables); only the cells holding symbols enter the sum."""
        scale = params["scale"]
        if self.edges is None:  # stochastic cells: one convolution per set
            return np.array([self.bits(family, {k: float(v[i]) for k, v in params.items()})
                             for i in range(scale.size)])
        base = family.removeprefix("zi-")
        ok = scale > 0
        z = (self.edges - params["loc"][:, None]) / np.where(ok, scale, 1.0)[:, None]
        shape = params[SHAPE[base]][:, None] if base in SHAPE else None
        g = 0.5 - _survival(base, np.abs(z), shape)
        np.copysign(g, z, out=g)
        q = np.empty(z.shape)  # cells lo..hi, then the escape entry
        np.subtract(g[:, 1:], g[:, :-1], out=q[:, :-1])
        np.fmax(q[:, :-1], 0.0, out=q[:, :-1])  # NaN (a degenerate z) -> 0
        if family.startswith("zi-"):
            q[:, :-1] *= 1.0 - params["pi"][:, None]
            if self._zero_cell is not None:
                q[:, self._zero_cell] += params["pi"]
        q[:, -1] = np.fmax(1.0 - q[:, :-1].sum(axis=1), 0.0)
        q /= q.sum(axis=1, keepdims=True)
        # floor_normalize_valid row by row: the small entries raised to the floor, the deficit
        # F n_small - (1 - big) taken from the big ones, i.e. scaled by (1 - F n_small) / big
        small = q < PROB_FLOOR
        big = np.where(small, 0.0, q)
        factor = (1.0 - PROB_FLOOR * small.sum(axis=1)) / big.sum(axis=1)
        big *= factor[:, None]
        big[small] = PROB_FLOOR
        out = (np.log2(big[:, self._present]) @ self._present_counts) / -max(self.n, 1)
        return np.where(ok, out, np.inf)

@dataclass
class CodelengthFit:
    """A family fitted to the symbols: parameters, bits per symbol at them, and how it was found."""

    family: str
    params: dict[str, float]
    bits: float
    start: str
    flags: tuple[str, ...]
    evaluations: int
    seconds: float

    @property
    def dist(self) -> Any:
        return make_family(self.family, self.params)


class _Coordinates:
    """params <-> the optimizer's vector: log shape, loc / scale0 (if free), log scale, logit pi.

    GenNorm's scale coordinate is beta log(scale / scale0): as the scale of a spike falls, beta falls
    with it (its tails depend on (|x| / scale)^beta), a curved valley in (log beta, log scale) that
    Nelder-Mead crawled along (~800 evaluations on 21 workload records; ~40 % fewer in this one)."""

    def __init__(self, family: str, start: dict[str, float], loc_fixed: float | None) -> None:
        self.family, self.loc_fixed = family, loc_fixed
        self.base = family.removeprefix("zi-")
        self.s0 = start["scale"]
        self.names: list[str] = []
        if family.startswith("zi-"):
            self.names.append("pi")
        if self.base in SHAPE:
            self.names.append(SHAPE[self.base])
        if loc_fixed is None:
            self.names.append("loc")
        self.names.append("scale")
        # GenNorm: beta log(scale / scale0) instead of log scale, along which a spike's optimum
        # (scale -> 0 with beta) lies straight: its tails depend on (|x| / scale)^beta
        self.tail_scale = self.base == "gennorm"

    def to_x(self, p: dict[str, float]) -> np.ndarray:
        out = []
        for k in self.names:
            if k == "pi":
                v = min(max(p["pi"], 1e-12), 1 - 1e-9)
                out.append(math.log(v / (1 - v)))
            elif k == "loc":
                out.append(p["loc"] / self.s0)
            elif k == "scale" and self.tail_scale:
                out.append(p["beta"] * math.log(p["scale"] / self.s0))
            else:
                out.append(math.log(p[k] / (self.s0 if k == "scale" else 1.0)))
        return np.array(out)

    def to_params(self, x: np.ndarray) -> dict[str, float]:
        p: dict[str, float] = {}
        for k, v in zip(self.names, x, strict=True):
            if k == "pi":
                p["pi"] = float(sc.expit(v))
            elif k == "loc":
                p["loc"] = float(v * self.s0)
            elif k == "scale" and self.tail_scale:
                p["scale"] = float(math.exp(min(max(v / p["beta"], -30.0), 30.0)) * self.s0)
            else:
                p[k] = float(math.exp(v) * (self.s0 if k == "scale" else 1.0))
        if self.loc_fixed is not None:
            p["loc"] = self.loc_fixed
        return p

    def to_params_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """`to_params` of every row of x (B, dims): each parameter an array of B."""
        p: dict[str, np.ndarray] = {}
        for j, k in enumerate(self.names):
            v = x[:, j]
            if k == "pi":
                p["pi"] = sc.expit(v)
            elif k == "loc":
                p["loc"] = v * self.s0
            elif k == "scale" and self.tail_scale:
                p["scale"] = np.exp(np.clip(v / p["beta"], -30.0, 30.0)) * self.s0
            else:
                p[k] = np.exp(v) * (self.s0 if k == "scale" else 1.0)
        if self.loc_fixed is not None:
            p["loc"] = np.full(x.shape[0], self.loc_fixed)
        return p

    def bounds(self) -> list[tuple[float | None, float | None]]:
        out: list[tuple[float | None, float | None]] = []
        for k in self.names:
            if k == "beta":
                out.append((math.log(BETA_RANGE[0]), math.log(BETA_RANGE[1])))
            elif k == "df":
                out.append((math.log(DF_RANGE[0]), math.log(DF_RANGE[1])))
            elif k == "pi":
                out.append((-40.0, 25.0))
            elif k == "loc":
                out.append((-1e3, 1e3))
            elif k == "scale" and self.tail_scale:
                out.append((-30.0 * BETA_RANGE[1], 30.0 * BETA_RANGE[1]))
            else:
                out.append((-30.0, 30.0))
        return out


BINNED_STARTS = ("normal", "laplace", "gennorm")
"""Families whose code-length fit starts from moments of the symbol histogram (`binned_start`)."""


def gennorm_beta_of_ratio(ratio: float) -> float:
    """The GenNorm shape whose moment ratio E(x-m)^2 / (E|x-m|)^2 = G(3/b) G(1/b) / G(2/b)^2 is
    `ratio` (decreasing from +inf at b -> 0 to 4/3 at b -> inf), clipped to `BETA_RANGE`."""
    def excess(log_b: float) -> float:
        b = math.exp(log_b)
        return sc.gammaln(3 / b) + sc.gammaln(1 / b) - 2 * sc.gammaln(2 / b) - math.log(ratio)

    lo, hi = math.log(BETA_RANGE[0]), math.log(BETA_RANGE[1])
    if not ratio > 0 or excess(hi) >= 0:
        return BETA_RANGE[1]
    if excess(lo) <= 0:
        return BETA_RANGE[0]
    return math.exp(scipy.optimize.brentq(excess, lo, hi, xtol=1e-3))


def binned_start(family: str, data: SymbolCounts, loc: str | float = "fit") -> dict[str, float] | None:
    """A start from binned moments of the symbol histogram over deterministic cells (None when
    there is nothing to start from: stochastic cells, no counts, or every count in one cell).

    Each symbol stands at its cell's midpoint (an open end cell at its finite edge -+ half the
    typical width w); loc is the mean (Normal) or the interpolated median (Laplace, GenNorm);
    Normal's scale is the standard deviation with Sheppard's correction (var - w^2 / 12),
    Laplace's the mean absolute deviation d, GenNorm's beta solves the moment ratio
    var / d^2 (`gennorm_beta_of_ratio`) and its scale is d G(1/beta) / G(2/beta)."""
    if data.edges is None or family not in BINNED_STARTS:
        return None
    e, c = data.edges, data.counts[:-1]
    n = float(c.sum())
    if not n > 0 or int(np.count_nonzero(c)) < 2:
        return None
    w = np.diff(e)
    finite = np.isfinite(w) & (w > 0)
    if not finite.any():
        return None
    width = float(np.median(w[finite]))
    with np.errstate(invalid="ignore"):
        mid = np.where(finite, 0.5 * (e[:-1] + e[1:]),
                       np.where(np.isfinite(e[1:]), e[1:] - 0.5 * width, e[:-1] + 0.5 * width))
    if not np.isfinite(mid[c > 0]).all():
        return None
    mid = np.where(c > 0, mid, 0.0)
    if loc != "fit":
        m = float(loc)
    elif family == "normal":
        m = float(np.dot(c, mid)) / n
    else:  # the median, interpolated inside its cell
        cum = np.cumsum(c)
        j = int(np.searchsorted(cum, 0.5 * n))
        lo_edge = e[j] if np.isfinite(e[j]) else mid[j] - 0.5 * width
        m = float(lo_edge + (0.5 * n - (cum[j] - c[j])) / c[j] * (w[j] if finite[j] else width))
    d = mid - m
    var = float(np.dot(c, d * d)) / n
    mad = float(np.dot(c, np.abs(d))) / n
    if not (var > 0 and mad > 0):
        return None
    var = var - width**2 / 12 if var > width**2 / 6 else var / 2  # Sheppard, kept positive
    if family == "normal":
        return {"loc": m, "scale": math.sqrt(var)}
    if family == "laplace":
        return {"loc": m, "scale": mad}
    beta = gennorm_beta_of_ratio(var / mad**2)
    return {"beta": beta, "loc": m, "scale": mad * math.exp(sc.gammaln(1 / beta) - sc.gammaln(2 / beta))}


def bound_flags(family: str, params: dict[str, float]) -> tuple[str, ...]:
    """Flags of a code-length optimum on a bound of its shape range."""
    base = family.removeprefix("zi-")
    flags = []
    for name, (lo, hi) in (("beta", BETA_RANGE), ("df", DF_RANGE)):
        if SHAPE.get(base) == name:
            v = params[name]
            if v <= lo * 1.001:
                flags.append(f"{name}_at_lower_bound: code-length fit hit {name} = {lo:g}")
            elif v >= hi * 0.999:
                flags.append(f"{name}_at_upper_bound: code-length fit hit {name} = {hi:g}")
    return tuple(flags)


def fit_codelength(family: str, data: SymbolCounts, starts: list[tuple[str, dict[str, float]]],
                   loc: str | float = "fit", maxiter: int = 400, restarts: int = 2) -> CodelengthFit:
    """Minimize the bits of `data` under `family` from the best of `starts` ((label, params));
    when that optimum is on a bound or a spike, from the next ones too (up to `restarts` searches):
    different starts sit in different basins (a spike at 0 or a density).

    `loc`: "fit" (free) or a number (held). Nested candidates are the caller's (`Codebooks`).
    """
    t0 = time.perf_counter()
    family = family_name(family)
    loc_fixed = None if loc == "fit" else float(loc)
    evaluations = 0

    def bits(p: dict[str, np.ndarray]) -> np.ndarray:
        nonlocal evaluations
        evaluations += int(p["scale"].size)
        return data.bits_batch(family, p)

    scored = []
    for label, p in starts:
        p = dict(p)
        if loc_fixed is not None:
            p["loc"] = loc_fixed
        if family.startswith("zi-"):
            p.setdefault("pi", 0.0)
        if SHAPE.get(family.removeprefix("zi-")) == "beta":
            p["beta"] = float(np.clip(p["beta"], *BETA_RANGE))
        if SHAPE.get(family.removeprefix("zi-")) == "df":
            p["df"] = float(np.clip(p["df"], *DF_RANGE))
        if not (p["scale"] > 0 and math.isfinite(p["scale"])):
            continue
        scored.append((label, p))
    if not scored:
        raise ValueError(f"code-length fit of {family}: no usable starting point")
    names = list(scored[0][1])
    at = bits({k: np.array([q[k] for _, q in scored], dtype=float) for k in names})
    scored = [(float(b), label, q) for b, (label, q) in zip(at, scored, strict=True)]
    scored.sort(key=lambda t: t[0])
    p, b, label = scored[0][2], scored[0][0], scored[0][1]
    for _, start_label, p0 in scored[:restarts]:
        q, qb = _search(bits, family, p0, loc_fixed, maxiter)
        if qb < b:
            p, b, label = q, qb, start_label
        if not _optimum_flags(family, p, data):
            break
    flags = _optimum_flags(family, p, data)
    if data.n < SMALL_N:
        flags += (f"small_sample: n={data.n} < {SMALL_N} symbols, the fit is unreliable",)
    return CodelengthFit(family, p, b, label, flags, evaluations, time.perf_counter() - t0)


def _optimum_flags(family: str, p: dict[str, float], data: SymbolCounts) -> tuple[str, ...]:
    """Why an optimum is not a density fit: a shape on its bound or a scale collapsed to a spike."""
    flags = bound_flags(family, p)
    if p["scale"] < 1e-3 * data.cell_width:
        flags += (f"scale_at_lower_bound: code-length fit collapsed the scale to {p['scale']:.3g} "
                  f"(a spike, not a density; cells are {data.cell_width:.3g} wide)",)
    return flags


def _search(bits: Any, family: str, p0: dict[str, float], loc_fixed: float | None,
            maxiter: int, speculative: bool = True) -> tuple[dict[str, float], float]:
    """Nelder-Mead from p0: (best params, their bits); `bits` maps a dict of parameter arrays
    to their bits (`SymbolCounts.bits_batch`)."""
    coords = _Coordinates(family, p0, loc_fixed)
    x0 = coords.to_x(p0)
    # Nelder-Mead: no gradients (the floored table has kinks), no BLAS (L-BFGS-B's per-iteration
    # overhead is 10-20x an evaluation here); a simplex of +-0.3 in log shape / scale, loc / scale0;
    # stop at bf16's resolution (2^-8 relative: 2e-3 in log units) or 1e-5 bits per symbol
    bounds = coords.bounds()
    lower, upper = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    x0 = np.clip(x0, lower, upper)
    simplex = np.vstack([x0, x0 + 0.3 * np.eye(x0.size)])
    x, fx = nelder_mead(lambda xs: bits(coords.to_params_batch(xs)), simplex, lower, upper,
                        xatol=2e-3, fatol=1e-5, maxiter=maxiter, speculative=speculative)
    return coords.to_params(x), fx


_TRIAL_STEPS = (1.0, 2.0, 0.5, -0.5)
"""Reflection, expansion, outside and inside contraction: xbar + c (xbar - worst)."""


def nelder_mead(f: Any, simplex: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, xatol: float,
                fatol: float, maxiter: int, speculative: bool = True) -> tuple[np.ndarray, float]:
    """Nelder & Mead (1965) with bounds by clipping, step for step scipy's
    `minimize(method="Nelder-Mead")` (reflection 1, expansion 2, contractions 1/2, shrink 1/2,
    its stopping rule and `maxiter`), for an `f` that maps a (B, dims) array of points to their B
    values. With `speculative`, each iteration evaluates its reflection, expansion and both
    contractions in one call (the same decisions; one call of a few rows costs about one of a
    single point when `f` is a numpy pass over a small table), else only the points it needs.
    The simplex of at most a few points lives in Python floats (numpy's per-call overhead would
    cost more than the arithmetic). Returns (best point, its value)."""
    n = simplex.shape[1]
    lo, hi = [float(v) for v in lower], [float(v) for v in upper]

    def clip(x: list[float]) -> list[float]:
        return [a if v < a else b if v > b else v for v, a, b in zip(x, lo, hi, strict=True)]

    sim = [clip([2 * b - v if v > b else v for v, b in zip(row, hi, strict=True)])
           for row in simplex.tolist()]
    fsim = [float(v) for v in f(np.array(sim))]
    order = sorted(range(n + 1), key=fsim.__getitem__)
    sim, fsim = [sim[i] for i in order], [fsim[i] for i in order]
    iterations = 1
    while iterations < maxiter:
        best = sim[0]
        # fsim is sorted: its spread is fsim[-1] - fsim[0] (tested first, it is the cheaper test)
        if (fsim[-1] - fsim[0] <= fatol
                and max(abs(v - b) for row in sim[1:] for v, b in zip(row, best, strict=True)) <= xatol):
            break
        xbar = [sum(col) / n for col in zip(*sim[:-1], strict=True)]
        worst = sim[-1]
        trial = [clip([m + c * (m - w) for m, w in zip(xbar, worst, strict=True)]) for c in _TRIAL_STEPS]
        known: list[float | None] = ([float(v) for v in f(np.array(trial))] if speculative
                                     else [None] * 4)

        def value(i: int, known: list = known, trial: list = trial) -> float:
            if known[i] is None:
                known[i] = float(f(np.array([trial[i]]))[0])
            return known[i]

        fxr, shrink, new = value(0), False, None
        if fxr < fsim[0]:
            new = 1 if value(1) < fxr else 0
        elif fxr < fsim[-2]:
            new = 0
        elif fxr < fsim[-1]:
            if value(2) <= fxr:
                new = 2
            else:
                shrink = True
        elif value(3) < fsim[-1]:
            new = 3
        else:
            shrink = True
        if new is not None:
            sim[-1], fsim[-1] = trial[new], known[new]
        if shrink:
            sim[1:] = [clip([b + 0.5 * (v - b) for v, b in zip(row, best, strict=True)]) for row in sim[1:]]
            fsim[1:] = [float(v) for v in f(np.array(sim[1:]))]
        iterations += 1
        order = sorted(range(n + 1), key=fsim.__getitem__)
        sim, fsim = [sim[i] for i in order], [fsim[i] for i in order]
    return np.array(sim[0]), min(fsim)


def is_degenerate(flags: tuple[str, ...] | str) -> bool:
    """True when any flag marks a fit that must not be a headline (shape on a bound, tiny n, ...)."""
    text = flags if isinstance(flags, str) else "; ".join(flags)
    return any(m in text for m in DEGENERATE_MARKERS)
