"""A symmetric family's cdf, log cdf, log sf and integrated cdf at every point of a sorted sample.

The distance statistics (KS, AD, W1) need F, log F, log S and Phi = int_{-inf}^x F at each of up to
2e5 sorted points. For GenNorm each exact F is an incomplete gamma (~50 ns a point) and each Phi a
second one: two thirds of a fit table's time on a large record. Along a sorted sample the
standardized tail T(u) = P(Z > u), u = |x - loc| / scale, is smooth between neighbouring points.
Where the family says its tail is costly (`Family.tail_interpolation`), T is evaluated exactly
(`Family.standard_tail`) only at every k-th point (the nodes) and in between by the cubic
Hermite interpolant of the nodes' values and slopes, in the coordinate v = u^p of
`Family.tail_power` (GenNorm with beta < 1: p = beta, where T = Q(1/beta, v) / 2 has neither the
cusp at loc nor the slow tail it has in u; otherwise v = u):

    T(v0 + s h) ~ T0 + s (a1 + s (a2 + s a3)),  a1 = h T0',  a2 = 3 dT - 2 h T0' - h T1',
    a3 = -2 dT + h T0' + h T1',  dT = T1 - T0,  h = v1 - v0,  T' = dT/dv = -f0 du/dv,

whose error is h^4 max|T^(4)| s^2 (1 - s)^2 / 24, largest mid-block. psi(u) = int_u^inf T (so that
Phi = scale psi + max(x - loc, 0)) is, in u, T's cubic integrated in closed form, psi0 - h s (T0 +
s (a1/2 + s (a2/3 + s a3/4))), plus s times its miss of the exact psi1 at the block's end: Phi is
then continuous at the nodes and Phi' = F of the cubic, so the differences of Phi that W1 sums are
as accurate as F. In v = u^beta, where that integral has no closed form, psi is a cubic Hermite
of its own (slope dpsi/dv = -T du/dv), checked ten times tighter.

Each block is checked at its point nearest the middle against the exact T and psi. It is evaluated
exactly wherever either is off by more than `RTOL` relative (psi relative to psi + u T, the size
of the terms its exact formula subtracts), or its T or psi changes by more than a third across it.
That covers the far tails (wide gaps, T falling by orders of magnitude), a jump out of a run of
ties, a cusp, and any block that straddles loc. Where every point is tied (h = 0) the values are
the node's.

The results agree with the exact evaluation to ~1e-12 relative in min(F, 1 - F), log F, log S and
psi; KS to ~1e-12, AD to ~2e-10 and W1 to ~5e-10 (tested on Normal, Laplace and GenNorm from
beta 0.05 to 50, on the model's own draws, heavier-tailed samples, float32 ties and exact zeros,
and real gradients). That is far below the 1 / sqrt(n) sampling noise of the statistics. Cheap
tails (Normal, Laplace) are evaluated exactly at every point, in one pass with the same in-place
assembly. Families without `standard_tail` (Student t, wrapped scipy distributions) go through
`cdf_logs` in the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 32
"""Sorted points per interpolation block (one exact node and one check point per block)."""
RTOL = 1e-12
"""A block is evaluated exactly when its middle point's interpolated T or psi is off by more than this."""
MIN_POINTS = 4 * BLOCK
"""Below this many points every point is evaluated exactly (the blocks would not pay)."""


@dataclass
class SortedCdf:
    """F, log F, log S and Phi of a symmetric family at every point of a sorted sample."""

    cdf: np.ndarray
    log_cdf: np.ndarray
    log_sf: np.ndarray
    phi: np.ndarray
    """Phi(x) = int_{-inf}^x F = E[(x - X)^+] = scale psi(u) + max(x - loc, 0)."""
    exact: int
    """How many points were evaluated exactly (nodes and check points included)."""


def supports(dist: Any) -> bool:
    """True when `dist` has the standardized tail the interpolation needs (`Family.standard_tail`)."""
    return callable(getattr(dist, "standard_tail", None))


def sorted_cdf(dist: Any, y: np.ndarray, block: int = BLOCK, rtol: float = RTOL) -> SortedCdf:
    """F, log F, log S and Phi of `dist` at the ascending float64 points `y` (module doc).

    Written with in-place operations: every temporary of 2e5 points is a fresh allocation that the
    kernel zero-fills page by page, which cost as much system time as the arithmetic saved."""
    z = y - dist.loc
    z /= dist.scale
    u = np.abs(z)
    n = u.size
    m = (n - 1) // block if n >= MIN_POINTS and getattr(dist, "tail_interpolation", False) else 0
    if not m:
        t, log_t, _, psi = dist.standard_tail(u)
        return _assemble(dist, y, z, t, log_t, psi, n)
    t = np.empty(n)
    log_t = np.empty(n)
    psi = np.empty(n)
    mb = m * block
    nodes = np.arange(0, mb + 1, block)
    t_n, log_n, f_n, psi_n = dist.standard_tail(u[nodes])
    # the coordinate v = u^p the cubics are in (`Family.tail_power`; GenNorm with beta < 1: p = beta,
    # where T = Q(1/beta, v) / 2 has neither the cusp at loc nor the slow tails it has in u)
    p = float(getattr(dist, "tail_power", 1.0))
    v = u if p == 1.0 else u**p
    v_n = v[nodes]
    with np.errstate(invalid="ignore", divide="ignore"):
        du_dv = np.ones_like(v_n) if p == 1.0 else np.where(v_n > 0, u[nodes] / (p * v_n), 0.0)
    h = np.diff(v_n)
    # every point of block j (indices j*block .. j*block + block - 1) at once: (m, block) views;
    # a block of ties (h = 0) gets s = 0 / inf = 0, the node's values
    s = v[:mb].reshape(m, block) - v_n[:-1, None]
    s /= np.where(h == 0, np.inf, h)[:, None]
    # T and psi, each a cubic Hermite in v: dT/dv = -f0 du/dv, dpsi/dv = -T du/dv
    slope_t, slope_psi = -f_n * du_dv, -t_n * du_dv
    tb, a = _hermite(t[:mb].reshape(m, block), s, t_n, h * slope_t[:-1], h * slope_t[1:])
    pb = psi[:mb].reshape(m, block)
    if p == 1.0:
        # psi0 - h int_0^s of T's cubic, plus s times what that misses of the exact psi1 at s = 1
        # (of the order of the interpolation error): then Phi' = F of the cubic exactly, and the
        # differences of Phi across gaps (which W1 sums) are as accurate as F itself
        t0, (a1, a2, a3) = t_n[:-1], a
        miss = psi_n[1:] - (psi_n[:-1] - h * (t0 + 0.5 * a1 + a2 / 3 + 0.25 * a3))
        np.multiply(s, (0.25 * a3)[:, None], out=pb)
        pb += (a2 / 3)[:, None]
        pb *= s
        pb += (0.5 * a1)[:, None]
        pb *= s
        pb += t0[:, None]
        pb *= h[:, None]
        pb -= miss[:, None]
        pb *= s
        np.subtract(psi_n[:-1, None], pb, out=pb)
    else:  # T's cubic in v has no closed-form integral in u: psi is a cubic Hermite in v too
        _hermite(pb, s, psi_n, h * slope_psi[:-1], h * slope_psi[1:])
    dt = np.diff(t_n)
    # psi's Hermite in v (unlike the integral of T's cubic) is not tied to T: its errors, smooth
    # within a block, enter W1's sum of Phi differences, so it is held ten times tighter
    rtol_psi = rtol if p == 1.0 else 0.1 * rtol
    # the check point of a block: its point nearest the middle of [u0, u1], where the
    # interpolation error s^2 (1 - s)^2 is largest (the points need not be evenly spread)
    s -= 0.5
    np.abs(s, out=s)
    rows = np.arange(m)
    mid = np.argmin(s, axis=1)
    del s
    checks = rows * block + mid
    t_c, log_c, _, psi_c = dist.standard_tail(u[checks])
    ti, pi = tb[rows, mid], pb[rows, mid]
    with np.errstate(invalid="ignore", divide="ignore"):
        # psi's exact value is a difference (GenNorm: k Q(2/b, w) - u T): it is as accurate as
        # the larger of its terms, and so is the check
        good = ((np.abs(ti - t_c) <= rtol * t_c)
                & (np.abs(pi - psi_c) <= rtol_psi * (psi_c + u[checks] * t_c))
                # a block whose tail falls by more than a third (the far tails, a jump out of a
                # run of ties) is not trusted to one check point
                & (np.abs(dt) <= np.minimum(t_n[:-1], t_n[1:]) / 3)
                & (np.abs(np.diff(psi_n)) <= np.minimum(psi_n[:-1], psi_n[1:]) / 3))
        np.log(t[:mb], out=log_t[:mb])
    zs = z[nodes]
    good &= ~((zs[:-1] < 0) & (zs[1:] > 0))  # a block that straddles loc: u is not monotone in it
    t[nodes], log_t[nodes], psi[nodes] = t_n, log_n, psi_n
    t[checks], log_t[checks], psi[checks] = t_c, log_c, psi_c
    bad_blocks = np.flatnonzero(~good)
    # the exact points: every point of a failed block but its node and check point, and the rest
    inner = (bad_blocks[:, None] * block + np.arange(1, block)[None, :]).ravel()
    inner = inner[inner != np.repeat(checks[bad_blocks], block - 1)]
    exact_idx = np.concatenate([inner, np.arange(mb + 1, n)])
    if exact_idx.size:
        te, le, _, pe = dist.standard_tail(u[exact_idx])
        t[exact_idx], log_t[exact_idx], psi[exact_idx] = te, le, pe
    return _assemble(dist, y, z, t, log_t, psi, nodes.size + checks.size + exact_idx.size)


def _hermite(out: np.ndarray, s: np.ndarray, y: np.ndarray, d0: np.ndarray,
             d1: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The cubic Hermite interpolant of y (block ends y[:-1], y[1:], end slopes times the block width
    d0, d1) at s in [0, 1] per block row, written into `out` (Horner, in place), and its
    coefficients (a1, a2, a3) of s, s^2, s^3."""
    y0, dy = y[:-1], np.diff(y)
    a1, a2, a3 = d0, 3 * dy - 2 * d0 - d1, -2 * dy + d0 + d1
    np.multiply(s, a3[:, None], out=out)
    out += a2[:, None]
    out *= s
    out += a1[:, None]
    out *= s
    out += y0[:, None]
    return out, (a1, a2, a3)


def _assemble(dist: Any, y: np.ndarray, z: np.ndarray, t: np.ndarray, log_t: np.ndarray, psi: np.ndarray,
              exact: int) -> SortedCdf:
    """F, log F, log S, Phi from the tail T, log T and psi at |z|, in place: z is sorted, so the
    points below loc are a prefix [0, k0) (F = T, log S = log(1 - T)) and those above a suffix
    [k1, n) (F = 1 - T, log F = log(1 - T), log S = log T); at loc itself both logs are log(1/2)."""
    k0, k1 = int(np.searchsorted(z, 0.0, "left")), int(np.searchsorted(z, 0.0, "right"))
    if psi is t:  # Laplace: psi = T, and T becomes F below
        psi = psi.copy()
    big = np.negative(t)
    with np.errstate(divide="ignore"):
        np.log1p(big, out=big)  # log(1 - T)
    log_s = big
    upper = log_t[k1:].copy()
    log_f = log_t
    log_f[k0:] = big[k0:]
    log_s[k1:] = upper
    f = t
    np.subtract(1.0, f[k0:], out=f[k0:])
    phi = np.maximum(psi, 0.0, out=psi)
    phi *= dist.scale
    phi[k1:] += y[k1:] - dist.loc
    return SortedCdf(f, log_f, log_s, phi, int(exact))
