"""Per-layer moments and a histogram of a tensor, computed on its own device (summary-only capture).

For long runs where storing tensors is too much, the recorder keeps only these numbers per layer and
step. Everything is computed in float64 with tensor ops and no host synchronisation (no ``.item()``), so
on a GPU the result can be copied to pinned host memory asynchronously like any recorded tensor.

Moments are over the finite entries: with m_k = mean((x - mean)^k),
``std = sqrt(m_2)`` (population, ddof = 0) and ``kurtosis = m_4 / m_2^2 - 3`` (excess kurtosis, the
biased estimator; equal to ``scipy.stats.kurtosis(x)`` with its defaults ``fisher=True, bias=True``).
The histogram has ``bins`` equal-width bins on ``[min, max]`` of the finite entries, the last bin closed
(as ``numpy.histogram``); its edges are ``numpy.linspace(min, max, bins + 1)`` and are not stored.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: order of the entries of the vector returned by :func:`layer_moments`
MOMENT_FIELDS = ("n", "mean", "std", "abs_mean", "kurtosis", "min", "max", "zeros", "nonfinite")


def layer_moments(x: Tensor) -> Tensor:
    """float64 vector of :data:`MOMENT_FIELDS` for all entries of ``x``, on ``x.device``, no host sync."""
    x = x.detach().reshape(-1).to(torch.float64)
    finite = torch.isfinite(x)
    n = finite.sum().to(torch.float64)
    xf = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
    safe_n = torch.clamp(n, min=1.0)
    mean = xf.sum() / safe_n
    d = torch.where(finite, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))
    d2 = d * d
    m2 = d2.sum() / safe_n
    m4 = (d2 * d2).sum() / safe_n
    nan = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
    kurt = torch.where(m2 > 0, m4 / torch.where(m2 > 0, m2 * m2, torch.ones_like(m2)) - 3.0, nan)
    inf = torch.full((), float("inf"), dtype=x.dtype, device=x.device)
    mn = torch.where(finite, x, inf).min() if x.numel() else inf
    mx = torch.where(finite, x, -inf).max() if x.numel() else -inf
    has = n > 0
    out = torch.stack([
        n,
        torch.where(has, mean, nan),
        torch.where(has, m2.sqrt(), nan),
        torch.where(has, xf.abs().sum() / safe_n, nan),
        kurt,
        torch.where(has, mn, nan),
        torch.where(has, mx, nan),
        (x == 0).sum().to(torch.float64),
        (~finite).sum().to(torch.float64),
    ])
    return out


def layer_histogram(x: Tensor, bins: int) -> Tensor:
    """int64 counts of the finite entries of ``x`` in ``bins`` equal bins on [min, max], on ``x.device``."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = x.detach().reshape(-1).to(torch.float64)
    finite = torch.isfinite(x)
    counts = torch.zeros(bins, dtype=torch.float64, device=x.device)
    if x.numel() == 0:
        return counts.to(torch.int64)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    inf = torch.full((), float("inf"), dtype=x.dtype, device=x.device)
    mn = torch.where(finite, x, inf).min()
    mx = torch.where(finite, x, -inf).max()
    width = torch.where(mx > mn, mx - mn, torch.ones_like(mx))
    pos = torch.where(finite, (x - torch.where(finite.any(), mn, zero)) / width * bins, zero)
    idx = pos.floor().clamp_(0, bins - 1).to(torch.int64)
    counts.index_add_(0, idx, finite.to(torch.float64))
    return counts.to(torch.int64)


def histogram_edges(mn: float, mx: float, bins: int) -> np.ndarray:
    """The ``bins + 1`` bin edges used by :func:`layer_histogram` for a layer with finite range [mn, mx]."""
    return np.linspace(mn, mx, bins + 1)
