"""Lloyd-Max quantizer: the MSE-optimal L-level quantizer for a fitted family's density
(Lloyd 1982; Max 1960): thresholds are midpoints of levels, levels are cell centroids."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from coders.family_fit import fit_dist
from coders.quantizers.base import (
    EXPONENT_BITS,
    IntervalCells,
    Quantized,
    as_float_array,
    check_range,
    clip_edges,
    is_torch,
    scale_by_pow2,
    scale_exponent,
)
from coders.wire import FLOAT32_BITS


def lloyd_max_levels(dist: Any, levels: int, iters: int = 200, tol: float = 1e-9,
                     grid: int = 1 << 15, tail: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd-Max levels and thresholds for a density given by its cdf/ppf (Lloyd 1982; Max 1960).

    Alternate t_i = (r_i + r_{i+1}) / 2 and r_i = E[X | t_{i-1} < X < t_i]; the centroids are
    integrals over a fine grid of the cdf (cell masses dF and midpoints), so only `cdf`/`ppf` of
    the family are used. Returns (levels (L,), thresholds (L-1,)), float64, increasing.
    """
    if levels < 2:
        raise ValueError(f"lloyd_max_levels: need at least 2 levels, got {levels}")
    a, b = float(dist.ppf(tail)), float(dist.ppf(1 - tail))
    if not (math.isfinite(a) and math.isfinite(b) and b > a):
        raise ValueError(f"lloyd_max_levels: degenerate distribution support [{a}, {b}]")
    xs = np.linspace(a, b, grid + 1)
    F = np.asarray(dist.cdf(xs), dtype=np.float64)
    dF = np.diff(F)
    mid = 0.5 * (xs[1:] + xs[:-1])
    cm = np.concatenate([[0.0], np.cumsum(dF)])
    cx = np.concatenate([[0.0], np.cumsum(mid * dF)])
    r = np.asarray(dist.ppf((np.arange(levels) + 0.5) / levels), dtype=np.float64)
    for _ in range(iters):
        t = 0.5 * (r[1:] + r[:-1])
        edges = np.concatenate([[a], t, [b]])
        m = np.interp(edges, xs, cm)
        s = np.interp(edges, xs, cx)
        mass, first = np.diff(m), np.diff(s)
        new = np.where(mass > 0, first / np.maximum(mass, 1e-300), 0.5 * (edges[1:] + edges[:-1]))
        new = np.maximum.accumulate(new)
        done = np.max(np.abs(new - r)) <= tol * (b - a)
        r = new
        if done:
            break
    return r, 0.5 * (r[1:] + r[:-1])


@dataclass
class TableCells(IntervalCells):
    """L cells between `thresholds`, symbols offset + 0 .. offset + L - 1, x_hat = levels[k - offset]."""

    levels: np.ndarray
    thresholds: np.ndarray
    offset: int
    bounds: tuple[int, int] | None = None

    def edges(self, lo: int, hi: int) -> np.ndarray:
        k = check_range(lo, hi)
        # boundary below symbol j is thresholds[j - offset - 1]
        j = (k - self.offset - 1).astype(np.int64)
        t = np.concatenate([[-np.inf], self.thresholds, [np.inf]])
        return clip_edges(t[np.clip(j + 1, 0, len(t) - 1)], k, self.bounds)

    def reconstruct(self, symbols: np.ndarray) -> np.ndarray:
        idx = symbols - self.offset
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.levels)):
            raise ValueError("dequantize: symbol outside the level table")
        return self.levels[idx].astype(np.float32)


class LloydMaxQuantizer:
    """Lloyd-Max (MSE-optimal) L-level quantizer for a fitted family's density.

    `family`: a family name for `gradstats.fit` (fitted to x at each call) or a distribution object
    with cdf/ppf (used as is). Symbols are level indices shifted so that the middle level is 0:
    k in [-(L // 2), L - 1 - L // 2]. Decoder data: the L levels as float32 (reconstruction uses
    the float32 values; thresholds are their midpoints). With a family name, an input of extreme
    magnitude is fitted and quantized as x / 2^E (`scale_exponent`; E: 16 more bits, flagged by
    sending the levels in decreasing order); a given distribution is in units of x (E = 0).
    """

    def __init__(self, levels: int = 16, family: Any = "gennorm", iters: int = 200) -> None:
        if levels < 2:
            raise ValueError(f"LloydMaxQuantizer: levels must be >= 2, got {levels}")
        self.levels, self.family, self.iters = levels, family, iters

    @property
    def name(self) -> str:
        fam = self.family if isinstance(self.family, str) else type(self.family).__name__
        return f"lloyd-max(L={self.levels},{fam})"

    def _exponent(self, x: Any) -> int:
        """`scale_exponent(x)` (finiteness checked); 0 for a given distribution (in units of x)."""
        e = scale_exponent(x)
        return e if isinstance(self.family, str) else 0

    def normalize(self, x: Any) -> np.ndarray:
        """The model domain: x / 2^E (flat)."""
        a = as_float_array(x).ravel()
        return scale_by_pow2(a, self._exponent(a))

    def design(self, dist: Any) -> tuple[np.ndarray, np.ndarray]:
        """(float32-rounded levels, thresholds) for `dist`."""
        r, _ = lloyd_max_levels(dist, self.levels, iters=self.iters)
        if not np.abs(r).max() <= np.finfo(np.float32).max:
            raise ValueError(f"LloydMaxQuantizer: levels {r.min():g}..{r.max():g} overflow float32 "
                             "(they are sent as 32 bits); give a family name to have x scaled")
        r = r.astype(np.float32).astype(np.float64)
        return r, 0.5 * (r[1:] + r[:-1])

    def quantize(self, x: Any) -> Quantized:
        e = self._exponent(x)
        shape = tuple(np.shape(x))
        device = str(x.device) if is_torch(x) else None
        a = scale_by_pow2(as_float_array(x).ravel(), e)
        if a.size == 0:
            raise ValueError("LloydMaxQuantizer: cannot design levels from an empty input")
        if float(np.max(a)) == float(np.min(a)):
            raise ValueError("LloydMaxQuantizer: input has one distinct value; no density to fit")
        dist = fit_dist(a, self.family)
        r, t = self.design(dist)
        off = -(self.levels // 2)
        k = np.searchsorted(t, a, side="right").astype(np.int64) + off
        cells = TableCells(levels=r, thresholds=t, offset=off, bounds=(off, off + self.levels - 1))
        return Quantized(symbols=k, shape=shape, method=self.name, cells=cells,
                         side_bits=FLOAT32_BITS * self.levels + (EXPONENT_BITS if e else 0),
                         torch_device=device, info={"dist": dist}, exponent=e,
                         float64=bool(e and a.dtype == np.float64))

    def dequantize(self, q: Quantized) -> Any:
        return q.dequantize()
