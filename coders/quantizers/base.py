"""What every quantizer returns: symbols plus a `Cells` object (the decoder data), and the
`Quantizer` protocol.

A `Cells` object knows, for its quantizer, how symbols map back to values (`reconstruct`), the
cell boundaries of each symbol in the *model domain* (`edges(lo, hi)`), and the law of the symbol
under a family (`probs(dist, lo, hi)`): the family's mass over each cell, or for stochastic
rounding the density convolved with the rounding triangle. A probability model, the code-length
fit of a codebook (`coders.codebooks`) and the decoder all ask the cells, never which quantizer
produced them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

try:  # torch is a dependency, but keep numpy-only use importable
    import torch
except ImportError:  # pragma: no cover
    torch = None


def is_torch(x: Any) -> bool:
    """True for a torch tensor (any device)."""
    return torch is not None and isinstance(x, torch.Tensor)


class NonFiniteInputError(ValueError):
    """Input with NaN or Inf entries: the message counts them (`nonfinite_summary`)."""


def nonfinite_summary(x: Any) -> str | None:
    """None when every entry of x is finite, else what is wrong, e.g. "3 NaN, 1 +Inf of 10000
    entries (first at flat index 17)": the check a caller runs to skip a record and say why."""
    if is_torch(x):
        t = x.detach().reshape(-1)
        if not t.is_floating_point() or not t.numel() or bool(torch.isfinite(t).all()):
            return None
        counts = [int(torch.isnan(t).sum()), int(torch.isposinf(t).sum()), int(torch.isneginf(t).sum())]
        first = int(torch.nonzero(~torch.isfinite(t))[0, 0])
        n = t.numel()
    else:
        a = np.asarray(x).reshape(-1)
        if a.dtype.kind not in "fc" or not a.size or (np.isfinite(a.min()) and np.isfinite(a.max())):
            return None
        counts = [int(np.isnan(a).sum()), int(np.isposinf(a).sum()), int(np.isneginf(a).sum())]
        first = int(np.flatnonzero(~np.isfinite(a))[0])
        n = a.size
    parts = [f"{c} {name}" for c, name in zip(counts, ("NaN", "+Inf", "-Inf"), strict=True) if c]
    return f"{', '.join(parts)} of {n} entries (first at flat index {first})"


def check_finite(x: Any) -> None:
    """ValueError for a non-real dtype; `NonFiniteInputError` (a ValueError) for any NaN / Inf."""
    scale_exponent(x)


SCALE_EXPONENT_RANGE = 64
"""Inputs with max |x| in [2^-64, 2^64] (or all zero) are quantized as they are; others are first
divided by a power of two (`scale_exponent`)."""
EXPONENT_BITS = 16
"""A power-of-two exponent sent as a 16-bit signed integer."""


def scale_exponent(x: Any) -> int:
    """`abs_max_exponent(x)[1]`."""
    return abs_max_exponent(x)[1]


def abs_max_exponent(x: Any) -> tuple[float, int]:
    """(max |x| / 2^E, E) with E such that x / 2^E is an ordinary-range input: 0 when max |x| is in
    [2^-SCALE_EXPONENT_RANGE, 2^SCALE_EXPONENT_RANGE] or x is all zero, else the exponent of
    max |x| (frexp: max |x| / 2^E in [1/2, 1)). ValueError for a non-real dtype,
    `NonFiniteInputError` for NaN / Inf entries (one pass: NaN propagates through min and max).

    Dividing by 2^E is exact (bar entries below 2^-1022 of the largest), so a quantizer working on
    x / 2^E gives the same symbols at every scale, and floats that are sent (a float32 step, bf16
    block scales, float32 levels) stay in their format's range; E itself costs `EXPONENT_BITS`.
    """
    if is_torch(x):
        if x.numel() == 0:
            return 0.0, 0
        if x.is_complex():
            raise ValueError(f"quantize: expected a real-valued tensor, got dtype {x.dtype}")
        t = x.detach().reshape(-1)
        mn, mx = torch.aminmax(t if t.is_floating_point() else t.double())
        mn, mx = float(mn), float(mx)
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":
            raise ValueError(f"quantize: expected a real-valued array, got dtype {a.dtype}")
        if a.size == 0:
            return 0.0, 0
        mn, mx = float(a.min()), float(a.max())
    if not (math.isfinite(mn) and math.isfinite(mx)):
        raise NonFiniteInputError(f"quantize: input contains NaN or Inf: {nonfinite_summary(x)}")
    m = max(-mn, mx)
    if m == 0 or 2.0**-SCALE_EXPONENT_RANGE <= m <= 2.0**SCALE_EXPONENT_RANGE:
        return m, 0
    e = math.frexp(m)[1]
    return math.ldexp(m, -e), e


def scale_by_pow2(x: Any, e: int) -> Any:
    """x / 2^e in x's own float dtype, correctly rounded (numpy: ldexp; torch: through float64,
    where the product of a float32 value and a power of two is exact)."""
    if e == 0:
        return x
    if is_torch(x):
        w = x.double()
        while e:  # 2^e as a Python float overflows past 2^1023: at most 1000 at a time
            step = max(-1000, min(1000, e))
            w = w * 2.0**-step
            e -= step
        return w.to(x.dtype)
    return np.ldexp(x, -e)


def as_float_array(x: Any) -> np.ndarray:
    """Host float array (float32 stays float32, anything else becomes float64)."""
    if is_torch(x):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"quantize: expected a real-valued array, got dtype {x.dtype}")
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    return x


@dataclass(frozen=True)
class Distortion:
    """Quantization error: MSE and SNR = 10 log10(sum x^2 / sum (x - xhat)^2) in dB."""

    mse: float
    snr_db: float


def distortion(x: Any, xhat: Any) -> Distortion:
    """MSE and SNR (dB) of a reconstruction `xhat` of `x` (inf SNR for an exact one)."""
    a, b = as_float_array(x).ravel(), as_float_array(xhat).ravel()
    if a.shape != b.shape:
        raise ValueError(f"distortion: shapes differ ({a.shape} vs {b.shape})")
    if a.size == 0:
        return Distortion(0.0, math.inf)
    if a.dtype == b.dtype == np.float32:
        # float32 values: their float64 squares and sums can neither under- nor overflow, and
        # scaling by a power of two commutes with every rounding, so no scaling (same numbers)
        e = 0
        a = a.astype(np.float64)
        d = a - b
    else:
        a, b = a.astype(np.float64), b.astype(np.float64)
        # squares in units of 2^e (max |x| of the two): no under- or overflow at any scale
        e = math.frexp(max(-float(a.min()), float(a.max()), -float(b.min()), float(b.max())))[1]
        # a and b are fresh float64 copies: scaled in place (exact: a power of two)
        a, b = np.ldexp(a, -e, out=a), np.ldexp(b, -e, out=b)
        d = a - b
    err = float(np.dot(d, d))
    sig = float(np.dot(a, a))
    try:
        mse = math.ldexp(err / a.size, 2 * e)
    except OverflowError:  # the MSE of values near float64's top is not a float64
        mse = math.inf
    if err == 0.0:
        snr = math.inf
    elif sig == 0.0:
        snr = -math.inf
    else:
        snr = 10.0 * math.log10(sig / err)
    return Distortion(mse, snr)


@runtime_checkable
class Cells(Protocol):
    """The decoder data of a quantizer: reconstruction, cell boundaries and the symbol law."""

    bounds: tuple[int, int] | None
    """The closed symbol range when the quantizer clips (its end cells reach -inf / +inf)."""

    def edges(self, lo: int, hi: int) -> np.ndarray:
        """Cell boundaries (model domain: x / 2^exponent) of symbols lo..hi: length hi - lo + 2."""

    def probs(self, dist: Any, lo: int, hi: int) -> np.ndarray:
        """P(K = k | dist), k = lo..hi, for a family `dist` of the model-domain values."""

    def reconstruct(self, symbols: np.ndarray) -> np.ndarray:
        """x_hat (float32, flat) of each symbol."""


def clip_edges(e: np.ndarray, k: np.ndarray, bounds: tuple[int, int] | None) -> np.ndarray:
    """Open the end cells of a clipping quantizer: boundaries at or below bounds[0] -> -inf,
    above bounds[1] -> +inf."""
    if bounds is not None:
        e[k <= bounds[0]] = -np.inf
        e[k > bounds[1]] = np.inf
    return e


def check_range(lo: int, hi: int) -> np.ndarray:
    """Boundary positions lo..hi + 1 (boundary j sits below symbol j); ValueError if empty."""
    if hi < lo:
        raise ValueError(f"edges: empty symbol range [{lo}, {hi}]")
    return np.arange(lo, hi + 2, dtype=np.float64)


class IntervalCells:
    """Cells given by their boundaries: P(K = k) is the family's mass over cell k."""

    bounds: tuple[int, int] | None = None

    def edges(self, lo: int, hi: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def probs(self, dist: Any, lo: int, hi: int) -> np.ndarray:
        """dist.interval_probs(edges(lo, hi))."""
        return np.asarray(dist.interval_probs(self.edges(lo, hi)), dtype=np.float64)


@dataclass
class Quantized:
    """Integer symbols plus their `cells` (the decoder data); `side_bits` is what the cells cost.

    `edges_side_bits`: what a family model needs beyond the decoder data to rebuild the cells
    (e.g. an entropy-constrained quantizer's thresholds). `edges`, `dequantize` and the
    attributes below are the cells' own (kept here so a `Quantized` reads as before).
    """

    symbols: np.ndarray
    shape: tuple
    method: str
    cells: Any
    side_bits: int = 0
    edges_side_bits: int = 0
    torch_device: str | None = None
    info: dict = field(default_factory=dict)
    exponent: int = 0
    """The input was quantized as x / 2^exponent (`scale_exponent`); x_hat = cells' x_hat * 2^exponent."""
    float64: bool = False
    """x_hat is float64 (a float64 input quantized with an exponent); float32 otherwise."""

    @property
    def n(self) -> int:
        return int(self.symbols.size)

    @property
    def bounds(self) -> tuple[int, int] | None:
        return self.cells.bounds

    @property
    def step(self) -> float:
        return float(getattr(self.cells, "step", 1.0))

    @property
    def thresholds(self) -> np.ndarray | None:
        return getattr(self.cells, "thresholds", None)

    @property
    def levels(self) -> np.ndarray | None:
        return getattr(self.cells, "levels", None)

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.cells, "stochastic", False))

    def edges(self, lo: int, hi: int) -> np.ndarray:
        """Cell boundaries (model domain: x / 2^exponent) of symbols lo..hi (see `Cells`)."""
        return self.cells.edges(lo, hi)

    def distortion(self, x: Any) -> Distortion:
        """MSE and SNR of this reconstruction against the original input x."""
        return distortion(x, self.dequantize())

    def dequantize(self) -> Any:
        """Reconstruct the values (numpy, or torch on the original device for torch input)."""
        out = self.cells.reconstruct(self.symbols).reshape(self.shape)
        if self.exponent:
            out = np.ldexp(out.astype(np.float64), self.exponent)
            out = out if self.float64 else out.astype(np.float32)
        if self.torch_device is not None:
            return torch.from_numpy(out).to(self.torch_device)
        return out


@runtime_checkable
class Quantizer(Protocol):
    """values -> `Quantized` (symbols + cells) and back."""

    name: str

    def quantize(self, x: Any) -> Quantized:
        """Symbols (flat int64) and cells of x (numpy or torch, any shape)."""

    def dequantize(self, q: Quantized) -> Any:
        """x_hat from a `Quantized`."""

    def normalize(self, x: Any) -> np.ndarray:
        """The model-domain values of x (flat): what a family is fitted to."""
