"""KS, AD and W1 as torch ops, where the sample lives: the goodness statistics of a record fitted on
a device (`fit_capture(..., device="cuda")`) without moving its subsample to the host.

The same statistics as `gradstats.goodness` (`_ks_sorted`, `_ad_sorted`, `_w1_sorted`), in the
same operations, for the families with closed-form cdf and W1 integrals: Normal, Laplace, GenNorm
and their zero-inflated versions (torch.special ndtr / log_ndtr / gammaincc for scipy.special's).
Only the W1 crossing points (O(sqrt n) of them) go to the host for the model quantile. A torch
tensor on the CPU takes this path too, which is how it is tested against the numpy one.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from gradstats.families import Family, GenNorm, Laplace, Normal, ZeroInflated

CLOSED_FORM = (Normal, Laplace, GenNorm)
"""Continuous families (and zero-inflated bases) this module evaluates on the device."""


def supports(dist: Family) -> bool:
    """Whether `device_distances` can measure dist."""
    base = dist.base if isinstance(dist, ZeroInflated) else dist
    return isinstance(base, CLOSED_FORM)


def _torch() -> Any:
    return sys.modules["torch"]


def cdf_logs(dist: Family, y: Any) -> tuple[Any, Any, Any]:
    """(F, log F, log S) of a continuous closed-form family at the tensor y, as the numpy
    `Family.cdf_logs` forms them (scipy's formulas)."""
    torch = _torch()
    z = (y - dist.loc) / dist.scale
    if isinstance(dist, Normal):
        return torch.special.ndtr(z), torch.special.log_ndtr(z), torch.special.log_ndtr(-z)
    if isinstance(dist, Laplace):
        e = 0.5 * torch.exp(-z.abs())  # the smaller tail, e^-|z| / 2
        f = torch.where(z < 0, e, 1 - e)
        log_small = -math.log(2.0) - z.abs()
        log_big = torch.log1p(-e)
        return f, torch.where(z < 0, log_small, log_big), torch.where(z >= 0, log_small, log_big)
    if isinstance(dist, GenNorm):
        c = 0.5 * torch.sign(z)
        g = torch.special.gammaincc(torch.full_like(z, 1.0 / dist.beta), z.abs() ** dist.beta)
        f = (0.5 + c) - c * g
        s = (0.5 - c) + c * g
        log_f = torch.where(z < 0, torch.log(f), torch.log1p(-s))
        log_s = torch.where(z > 0, torch.log(s), torch.log1p(-f))
        return f, log_f, log_s
    raise ValueError(f"goodness on a device: no closed form for {type(dist).__name__}; "
                     f"supported: {[c.__name__ for c in CLOSED_FORM]} and their zero-inflated versions")


def _outer_integral(dist: Family, x: Any, cdf: Any) -> Any:
    """`goodness._outer_integral` as torch ops (cdf = F(x) of the continuous family)."""
    torch = _torch()
    u = (x - dist.loc).abs() / dist.scale
    if isinstance(dist, Normal):
        psi = torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi) - u * torch.special.ndtr(-u)
    elif isinstance(dist, Laplace):
        psi = 0.5 * torch.exp(-u)
    else:
        b = dist.beta
        w = u**b
        k = 0.5 * math.exp(math.lgamma(2.0 / b) - math.lgamma(1.0 / b))
        half_q = torch.where(x < dist.loc, cdf, 1 - cdf)
        psi = k * torch.special.gammaincc(torch.full_like(w, 2.0 / b), w) - u * half_q
    return dist.scale * psi.clamp(min=0.0)


def _cdf_integral(dist: Family, x: Any, base_cdf: Any) -> Any:
    """Phi(x) = int_{-inf}^x F (`goodness._cdf_integral`); base_cdf = the continuous part's F(x)."""
    if isinstance(dist, ZeroInflated):
        return dist.pi * x.clamp(min=0.0) + (1 - dist.pi) * _cdf_integral(dist.base, x, base_cdf)
    return _outer_integral(dist, x, base_cdf) + (x - dist.loc).clamp(min=0.0)


def _ks(y: Any, dist: Family, base_f: Any) -> float:
    torch = _torch()
    n = y.numel()
    if not isinstance(dist, ZeroInflated):
        i = torch.arange(1, n + 1, dtype=y.dtype, device=y.device)
        d_plus = (i / n - base_f).max()
        d_minus = (base_f - (i - 1) / n).max()
        return float(torch.maximum(d_plus, d_minus))
    u, counts = torch.unique_consecutive(y, return_counts=True)
    ends = torch.cumsum(counts, 0)
    fn_right = ends.to(y.dtype) / n
    fn_left = fn_right - counts.to(y.dtype) / n
    f_right = dist.pi * (u >= 0).to(y.dtype) + (1 - dist.pi) * base_f[ends - counts]
    f_left = f_right - dist.pi * (u == 0).to(y.dtype)
    return float(torch.maximum((fn_right - f_right).abs().max(), (f_left - fn_left).abs().max()))


def _ad(y: Any, dist: Family, log_f: Any, log_s: Any) -> float:
    torch = _torch()
    if isinstance(dist, ZeroInflated):
        keep = y != 0
        y, log_f, log_s = y[keep], log_f[keep], log_s[keep]
        if y.numel() == 0:
            return math.nan
    n = y.numel()
    i = torch.arange(1, n + 1, dtype=y.dtype, device=y.device)
    terms = (2 * i - 1) * (log_f + log_s.flip(0))
    return float(-n - terms.sum() / n)


HostPhi = Callable[[Family, np.ndarray], np.ndarray]


def _w1(y: Any, dist: Family, base_f: Any, host_cdf_integral: HostPhi) -> float:
    """`goodness._w1_sorted` as torch ops; the model quantile at the crossing gaps on the host
    (`host_cdf_integral`: the numpy Phi of `goodness`, passed in to keep the import one-way)."""
    torch = _torch()
    zi = isinstance(dist, ZeroInflated)
    if zi:
        f = dist.pi * (y >= 0).to(y.dtype) + (1 - dist.pi) * base_f
        f_left = f - dist.pi * (y == 0).to(y.dtype)
    else:
        f = f_left = base_f
    phi = _cdf_integral(dist, y, base_f)
    n = y.numel()
    c = torch.arange(1, n, dtype=y.dtype, device=y.device) / n
    gap = torch.diff(y)
    d = c * gap - torch.diff(phi)
    total = d.abs()
    cross = torch.nonzero((f[:-1] < c) & (f_left[1:] > c) & (gap > 0)).reshape(-1)
    if cross.numel():
        ch, lo, hi = (t[cross].cpu().numpy() for t in (c, y[:-1], y[1:]))
        with np.errstate(invalid="ignore"):
            xs = np.clip(dist.ppf(ch), lo, hi)
        part = ch * (xs - lo) - (host_cdf_integral(dist, xs) - phi[cross].cpu().numpy())
        fixed = np.abs(2 * part - d[cross].cpu().numpy())
        total[cross] = torch.as_tensor(fixed, dtype=y.dtype, device=y.device)
    mean = (1 - dist.pi) * dist.loc if zi else dist.loc
    right = float(mean - y[-1] + phi[-1])
    return float(phi[0] + total.sum()) + max(right, 0.0)


def device_distances(y: Any, dist: Family, host_cdf_integral: HostPhi) -> dict[str, float]:
    """ks, ad and w1 of the sorted float64 tensor y against dist (`supports(dist)` must hold):
    one evaluation of the continuous part's F, log F and log S at y serves all three."""
    base = dist.base if isinstance(dist, ZeroInflated) else dist
    f, log_f, log_s = cdf_logs(base, y)
    return {"ks": _ks(y, dist, f), "ad": _ad(y, dist, log_f, log_s), "w1": _w1(y, dist, f, host_cdf_integral)}
