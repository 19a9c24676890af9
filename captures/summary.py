"""Per-layer moments and a histogram of a tensor, computed on its own device (summary-only capture).

For long runs where storing tensors is too much, the recorder keeps only these numbers per layer and
step. Everything is computed in float64 with tensor ops; on a GPU without host synchronisation (no
``.item()``), so the result can be copied to pinned host memory asynchronously like any recorded tensor.

Moments are over the finite entries: with m_k = mean((x - mean)^k),
``std = sqrt(m_2)`` (population, ddof = 0) and ``kurtosis = m_4 / m_2^2 - 3`` (excess kurtosis, the
biased estimator; equal to ``scipy.stats.kurtosis(x)`` with its defaults ``fisher=True, bias=True``).
The histogram has ``bins`` equal-width bins on ``[min, max]`` of the finite entries, the last bin closed
(as ``numpy.histogram``); its edges are ``numpy.linspace(min, max, bins + 1)`` and are not stored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

#: order of the entries of the vector returned by :func:`layer_moments`
MOMENT_FIELDS = ("n", "mean", "std", "abs_mean", "kurtosis", "min", "max", "zeros", "nonfinite")


def layer_summary(x: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """(float64 vector of :data:`MOMENT_FIELDS`, int64 histogram counts) of ``x``, on ``x.device``.

    On a CUDA device nothing synchronises with the host. On the CPU (where synchronising costs nothing)
    a tensor with only finite entries takes a faster path with fewer passes over the data.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = x.detach().reshape(-1).to(torch.float64)
    if x.device.type == "cpu" and x.numel():
        total = x.sum()
        # the float64 sum of finite float32/16 values cannot overflow, so it is finite iff every entry is
        if math.isfinite(float(total)):
            return _summary_finite_cpu(x, total, bins)
    return _summary_masked(x, bins)


def _summary_finite_cpu(x: Tensor, total: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    n = x.numel()
    mn, mx = torch.aminmax(x)
    mean = total / n
    d = x - mean
    d2 = d * d
    m2 = d2.sum() / n
    m4 = torch.dot(d2, d2) / n
    kurt = m4 / (m2 * m2) - 3.0 if float(m2) > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    moments = torch.stack([
        torch.tensor(float(n), dtype=torch.float64),
        mean,
        m2.sqrt(),
        torch.linalg.vector_norm(x, 1) / n,
        kurt,
        mn,
        mx,
        torch.tensor(float(n - int(torch.count_nonzero(x))), dtype=torch.float64),
        torch.tensor(0.0, dtype=torch.float64),
    ])
    lo, hi = float(mn), float(mx)
    if hi > lo:
        # the same binning as the masked path: floor((x - min) / (max - min) * bins), last bin closed
        # x >= lo, so truncation is floor; int32 conversion and bincount are much faster than int64 here
        idx = torch.sub(x, lo).mul_(bins / (hi - lo)).to(torch.int32).clamp_(max=bins - 1)
        counts = torch.bincount(idx, minlength=bins).to(torch.int64)
    else:
        counts = torch.zeros(bins, dtype=torch.int64)
        counts[0] = n
    return moments, counts


def _summary_masked(x: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    finite = torch.isfinite(x)
    n = finite.sum().to(torch.float64)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    nan = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
    inf = torch.full((), float("inf"), dtype=x.dtype, device=x.device)
    xf = torch.where(finite, x, zero)
    safe_n = torch.clamp(n, min=1.0)
    mean = xf.sum() / safe_n
    d = torch.where(finite, x - mean, zero)
    d2 = d * d
    m2 = d2.sum() / safe_n
    m4 = (d2 * d2).sum() / safe_n
    kurt = torch.where(m2 > 0, m4 / torch.where(m2 > 0, m2 * m2, torch.ones_like(m2)) - 3.0, nan)
    mn = torch.where(finite, x, inf).min() if x.numel() else inf
    mx = torch.where(finite, x, -inf).max() if x.numel() else -inf
    has = n > 0
    moments = torch.stack([
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
    counts = torch.zeros(bins, dtype=torch.float64, device=x.device)
    if x.numel():
        width = torch.where(mx > mn, mx - mn, torch.ones_like(mx))
        pos = torch.where(finite, (x - torch.where(has, mn, zero)) * (bins / width), zero)
        idx = pos.floor().clamp_(0, bins - 1).to(torch.int64)
        counts.index_add_(0, idx, finite.to(torch.float64))
    return moments, counts.to(torch.int64)


def layer_moments(x: Tensor) -> Tensor:
    """float64 vector of :data:`MOMENT_FIELDS` for all entries of ``x``, on ``x.device``."""
    return layer_summary(x, 1)[0]


def layer_histogram(x: Tensor, bins: int) -> Tensor:
    """int64 counts of the finite entries of ``x`` in ``bins`` equal bins on [min, max], on ``x.device``."""
    return layer_summary(x, bins)[1]


def histogram_edges(mn: float, mx: float, bins: int) -> np.ndarray:
    """The ``bins + 1`` bin edges used by :func:`layer_histogram` for a layer with finite range [mn, mx]."""
    return np.linspace(mn, mx, bins + 1)
