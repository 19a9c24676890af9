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
import threading

import numpy as np
import torch
from torch import Tensor

#: order of the entries of the vector returned by :func:`layer_moments`
MOMENT_FIELDS = ("n", "mean", "std", "abs_mean", "kurtosis", "min", "max", "zeros", "nonfinite")


#: entries per block of the CPU path: a float64 block and its scratch stay in the L2 cache
_BLOCK = 1 << 16


def layer_summary(x: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """(float64 vector of :data:`MOMENT_FIELDS`, int64 histogram counts) of ``x``, on ``x.device``.

    On a CUDA device nothing synchronises with the host. On the CPU (where synchronising costs nothing)
    a tensor with only finite entries takes a blocked path (:func:`_summary_finite_cpu`) that never
    makes a float64 copy of the whole tensor.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = x.detach().reshape(-1)
    if x.device.type == "cpu" and x.numel():
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.float32)  # exact
        elif x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float64)
        # a sum in x's own dtype: finite iff every entry is finite (or it overflowed: then the masked
        # path, which is exact for any input); its mean is the shift of the blocked path
        shift = float(x.mean())
        if math.isfinite(shift):
            return _summary_finite_cpu(x, shift, bins)
    return _summary_masked(x.to(torch.float64), bins)


def _summary_finite_cpu(x: Tensor, shift: float, bins: int) -> tuple[Tensor, Tensor]:
    """The summary of a finite 1-d float32/float64 CPU tensor, in blocks of :data:`_BLOCK` entries.

    Each block is converted to float64 once (into a buffer reused across calls) and all sums are
    accumulated in float64: S_abs = sum |x| and the shifted power sums S_k = sum (x - c)^k, k = 1..4,
    with c = ``shift`` (the float32 mean, within ~1e-6 std of the true mean, so nothing cancels). With
    delta = S_1 / n: mean = c + delta, m_2 = S_2/n - delta^2,
    m_4 = S_4/n - 4 delta S_3/n + 6 delta^2 S_2/n - 3 delta^4 (binomial expansion of (x - c - delta)^4).
    The histogram bin of an entry is floor((x - min) * bins / (max - min)) in float64, the last bin
    closed, counted with ``bincount`` per block.
    """
    n = x.numel()
    mn, mx = torch.aminmax(x)
    lo, hi = float(mn), float(mx)
    if hi == lo:  # a constant tensor: exact, whatever the rounding of the shift
        counts = torch.zeros(bins, dtype=torch.int64)
        counts[0] = n
        moments = [float(n), lo, 0.0, abs(lo), float("nan"), lo, hi, float(n if lo == 0 else 0), 0.0]
        return torch.tensor(moments, dtype=torch.float64), counts
    zeros = n - int(torch.count_nonzero(x))
    buf, tmp, idx = _scratch()
    scale = bins / (hi - lo)
    counts = torch.zeros(bins, dtype=torch.int64)
    s_abs = s1 = s2 = s3 = s4 = 0.0
    for start in range(0, n, _BLOCK):
        k = min(_BLOCK, n - start)
        b, t, i = buf[:k], tmp[:k], idx[:k]
        b.copy_(x[start:start + k])
        s_abs += float(torch.abs(b, out=t).sum())
        # x >= lo, so int32 truncation is floor; int32 bincount is much faster than int64
        i.copy_(torch.sub(b, lo, out=t).mul_(scale))
        counts += torch.bincount(i.clamp_(max=bins - 1), minlength=bins)
        b.sub_(shift)
        s1 += float(b.sum())
        s2 += float(torch.dot(b, b))
        torch.mul(b, b, out=t)
        s3 += float(torch.dot(t, b))
        s4 += float(torch.dot(t, t))
    delta = s1 / n
    mean = shift + delta
    m2 = max(s2 / n - delta * delta, 0.0)
    m4 = s4 / n - 4.0 * delta * s3 / n + 6.0 * delta * delta * s2 / n - 3.0 * delta ** 4
    kurt = m4 / (m2 * m2) - 3.0 if m2 > 0 else float("nan")
    moments = [float(n), mean, math.sqrt(m2), s_abs / n, kurt, lo, hi, float(zeros), 0.0]
    return torch.tensor(moments, dtype=torch.float64), counts


_local = threading.local()


def _scratch() -> tuple[Tensor, Tensor, Tensor]:
    """This thread's block buffers (float64 x2, int32), made once: no allocation per layer."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = (torch.empty(_BLOCK, dtype=torch.float64), torch.empty(_BLOCK, dtype=torch.float64),
                torch.empty(_BLOCK, dtype=torch.int32))
        _local.bufs = bufs
    return bufs


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
