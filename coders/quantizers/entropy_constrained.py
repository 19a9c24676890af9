"""Entropy-constrained uniform scalar quantizer (Chou, Lookabaugh & Gray, IEEE T-ASSP 1989).

Reconstruction points k * step; x goes to the k minimising (x - k step)^2 + lam step^2 l_k with
l_k = -log2 p_k iterated to a fixed point, i.e. thresholds shifted towards the rarer symbol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from coders.quantizers.base import (
    EXPONENT_BITS,
    IntervalCells,
    Quantized,
    abs_max_exponent,
    as_float_array,
    check_range,
    clip_edges,
    is_torch,
    scale_by_pow2,
)
from coders.quantizers.uniform import SYMBOL_LIMIT, check_symbol_range, given_step32, rms, step32
from coders.wire import FLOAT32_BITS


@dataclass
class ThresholdCells(IntervalCells):
    """Uniform cells of `step` except between offset and offset + len(thresholds), where the
    boundary between offset + i and offset + i + 1 is thresholds[i]; x_hat = k step."""

    step: float
    thresholds: np.ndarray
    offset: int
    bounds: tuple[int, int] | None = None

    def edges(self, lo: int, hi: int) -> np.ndarray:
        k = check_range(lo, hi)
        e = (k - 0.5) * self.step
        t = self.thresholds
        if len(t):
            i = (k - self.offset - 1).astype(np.int64)
            inside = (i >= 0) & (i < len(t))
            e[inside] = t[i[inside]]
            below, above = i < 0, i >= len(t)
            e[below] = np.minimum(e[below], t[0])
            e[above] = np.maximum(e[above], t[-1])
        return clip_edges(e, k, self.bounds)

    def reconstruct(self, symbols: np.ndarray) -> np.ndarray:
        return (symbols.astype(np.float64) * self.step).astype(np.float32)


class EntropyConstrainedQuantizer:
    """Entropy-constrained uniform scalar quantizer (Chou, Lookabaugh & Gray, IEEE T-ASSP 1989).

    Reconstruction points k * step; x goes to the k minimising (x - k step)^2 + lam step^2 l_k with
    l_k = -log2 p_k, iterated (on a subsample) to a fixed point. For neighbouring symbols that is a
    threshold t_k = step (k + 1/2 + lam (l_{k+1} - l_k) / 2): cells of rare symbols shrink, the
    zero cell grows (a dead zone). lam = 0 is plain rounding. Step as in `UniformQuantizer`
    (`step` or `scale_mult` times the RMS). The decoder needs only the step (32 bits); a
    family model needs the thresholds too (`edges_side_bits`: they are float32, 32 bits each, plus
    32 bits each for the first symbol and the threshold count). Inputs of extreme magnitude are
    quantized as x / 2^E, as in `UniformQuantizer` (E: 16 more bits, flagged by the step's sign).
    """

    def __init__(self, step: float | None = None, *, scale_mult: float | None = None, lam: float = 0.2,
                 iters: int = 10, sample: int = 1 << 18, seed: int = 0) -> None:
        if (step is None) == (scale_mult is None):
            raise ValueError("EntropyConstrainedQuantizer: give exactly one of step, scale_mult")
        if step is not None:
            step = given_step32("EntropyConstrainedQuantizer", step)
        if scale_mult is not None and not (scale_mult > 0 and math.isfinite(scale_mult)):
            raise ValueError(f"EntropyConstrainedQuantizer: scale_mult must be positive, got {scale_mult}")
        if lam < 0 or not math.isfinite(lam):
            raise ValueError(f"EntropyConstrainedQuantizer: lam must be >= 0, got {lam}")
        self.step, self.scale_mult, self.lam = step, scale_mult, lam
        self.iters, self.sample, self.seed = iters, sample, seed

    @property
    def name(self) -> str:
        s = f"step={self.step:g}" if self.step is not None else f"c={self.scale_mult:g}"
        return f"ecsq({s},lam={self.lam:g})"

    def _exponent(self, x: Any) -> tuple[float, int]:
        """(max |x / 2^E|, E), E = 0 with a given step (in units of x); finiteness checked."""
        m, e = abs_max_exponent(x)
        return (math.ldexp(m, e), 0) if self.step is not None else (m, e)

    def normalize(self, x: Any) -> np.ndarray:
        """The model domain: x / 2^E (flat)."""
        a = as_float_array(x).ravel()
        return scale_by_pow2(a, self._exponent(a)[1])

    def _assign(self, a: np.ndarray, step: float, k_lo: int, t: np.ndarray) -> np.ndarray:
        k = np.rint(a * (1.0 / step))
        if len(t) == 0:
            return k.astype(np.int64)
        idx = np.searchsorted(t, a, side="right")
        out = (k_lo + idx).astype(np.float64)
        low, high = idx == 0, idx == len(t)
        out[low] = np.minimum(k[low], k_lo)
        out[high] = np.maximum(k[high], k_lo + len(t))
        return out.astype(np.int64)

    def _thresholds(self, length: np.ndarray, k_lo: int, step: float) -> np.ndarray:
        """Boundaries between k_lo + i and k_lo + i + 1 (non-decreasing; equal ones = empty cells).

        argmin_k (x - k s)^2 + lam s^2 l_k is the lower envelope of the lines
        -2 k s x + k^2 s^2 + lam s^2 l_k (slopes falling with k), found with a stack (convex hull
        trick); symbols off the envelope get empty cells.
        """
        K = length.size
        k = k_lo + np.arange(K, dtype=np.float64)

        def cross(i: int, j: int) -> float:
            return step * (0.5 * (k[i] + k[j]) + 0.5 * self.lam * (length[j] - length[i]) / (k[j] - k[i]))

        hull: list[int] = []
        for j in range(K):
            while len(hull) >= 2 and cross(hull[-2], hull[-1]) >= cross(hull[-1], j):
                hull.pop()
            hull.append(j)
        b = np.array([cross(hull[i], hull[i + 1]) for i in range(len(hull) - 1)])
        # boundary below symbol index j (1..K-1): the hull breakpoint of the segment holding j
        pos = np.searchsorted(np.array(hull), np.arange(1, K), side="left") - 1
        t = b[np.clip(pos, 0, max(len(b) - 1, 0))] if len(b) else np.full(K - 1, step * (k_lo + 0.5))
        return np.maximum.accumulate(t.astype(np.float32).astype(np.float64))

    def design(self, a: np.ndarray, step: float) -> tuple[int, np.ndarray]:
        """(k_lo, thresholds between k_lo + i and k_lo + i + 1) from the data's own code lengths."""
        if a.size > self.sample:
            a = np.random.default_rng(self.seed).choice(a, self.sample, replace=False)
        k = np.rint(a / step).astype(np.int64)
        k_lo, t = int(k.min()), np.zeros(0)
        for _ in range(self.iters):
            k_lo, k_hi = int(k.min()), int(k.max())
            if k_hi == k_lo:
                return k_lo, np.zeros(0)
            p = np.bincount(k - k_lo, minlength=k_hi - k_lo + 1) / k.size
            length = -np.log2(np.maximum(p, 1.0 / k.size))
            t_new = self._thresholds(length, k_lo, step)
            k_new = self._assign(a, step, k_lo, t_new)
            converged = np.array_equal(k_new, k)
            k, t = k_new, t_new
            if converged:
                break
        return k_lo, t

    def quantize(self, x: Any) -> Quantized:
        m, e = self._exponent(x)
        shape = tuple(np.shape(x))
        device = str(x.device) if is_torch(x) else None
        a = scale_by_pow2(as_float_array(x).ravel(), e)
        if self.step is not None:
            step = float(self.step)
        else:
            step = step32(self.scale_mult * rms(a))
        if m / step + 1.0 >= SYMBOL_LIMIT:  # only then is the scaled copy worth making
            check_symbol_range(a * (1.0 / step), m / step + 1.0)
        if a.size == 0:
            k_lo, t = 0, np.zeros(0)
        else:
            k_lo, t = self.design(a, step)
        k = self._assign(a, step, k_lo, t)
        cells = ThresholdCells(step=step, thresholds=t, offset=k_lo)
        return Quantized(symbols=k, shape=shape, method=self.name, cells=cells,
                         side_bits=FLOAT32_BITS + (EXPONENT_BITS if e else 0),
                         edges_side_bits=FLOAT32_BITS * (len(t) + 2), torch_device=device, exponent=e,
                         float64=bool(e and a.dtype == np.float64))

    def dequantize(self, q: Quantized) -> Any:
        return q.dequantize()
