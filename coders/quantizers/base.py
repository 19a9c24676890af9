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


def check_finite(x: Any) -> None:
    """ValueError for a non-real dtype or any NaN / Inf entry."""
    if is_torch(x):
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("quantize: input contains NaN or Inf")
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":
            raise ValueError(f"quantize: expected a real-valued array, got dtype {a.dtype}")
        # two reductions instead of a boolean array: NaN propagates through min, Inf shows in min/max
        if a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
            raise ValueError("quantize: input contains NaN or Inf")


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
    a = as_float_array(x).ravel().astype(np.float64)
    b = as_float_array(xhat).ravel().astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"distortion: shapes differ ({a.shape} vs {b.shape})")
    if a.size == 0:
        return Distortion(0.0, math.inf)
    err = float(np.dot(a - b, a - b))
    sig = float(np.dot(a, a))
    mse = err / a.size
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
        """Cell boundaries (model domain) of symbols lo..hi: length hi - lo + 2."""

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
        """Cell boundaries (model domain) of symbols lo..hi: length hi - lo + 2 (see `Cells`)."""
        return self.cells.edges(lo, hi)

    def distortion(self, x: Any) -> Distortion:
        """MSE and SNR of this reconstruction against the original input x."""
        return distortion(x, self.dequantize())

    def dequantize(self) -> Any:
        """Reconstruct the values (numpy, or torch on the original device for torch input)."""
        out = self.cells.reconstruct(self.symbols).reshape(self.shape)
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
