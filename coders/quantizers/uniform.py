"""Uniform mid-tread quantizer k = round(x / step) (or stochastic rounding), per layer or per block.

Step set directly, as c * scale (RMS or a fitted family's scale), or from a number of levels with
clipping at a quantile of |x|; optional stochastic (unbiased) rounding k = floor(x / step + u),
u ~ U[0, 1), E[k step] = x; per-layer or per-block (e.g. 128 or 4096 entries, bf16 block scales)
scaling. Computes on the tensor's device for torch input.
"""

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
    abs_max_exponent,
    as_float_array,
    check_range,
    clip_edges,
    is_torch,
    scale_by_pow2,
    torch,
)
from coders.wire import BF16_BITS, FLOAT32_BITS, round_bf16


def stochastic_rounding_probs(dist: Any, lo: int, hi: int, step: float, sub: int = 16,
                              bounded: bool = False) -> np.ndarray:
    """P(K = k), k = lo..hi, for stochastic rounding K = floor(X / step + U), U ~ U[0, 1).

    P(K <= k) = E[clip(k + 1 - X / step, 0, 1)] = (G((k + 1) s) - G(k s)) / s with
    G(x) = int_{-inf}^x F(t) dt (the density convolved with a triangle of half-width s); G by the
    midpoint rule on a grid of s / `sub` (exact at atoms such as a zero-inflated point mass, which
    sit on grid points). Returns lo..hi probabilities; with `bounded`, the end symbols absorb the
    tails (a clipping quantizer), else the tails are left for the escape entry.
    """
    K = hi - lo + 1
    h = step / sub
    mids = (lo - 1 + (np.arange((K + 1) * sub) + 0.5) / sub) * step
    F = np.asarray(dist.cdf(mids), dtype=np.float64)
    G = np.concatenate([[0.0], np.cumsum(F) * h])[::sub]  # at k s, k = lo - 1 .. hi + 1 (offset cancels)
    C = np.clip(np.diff(G) / step, 0.0, 1.0)  # P(K <= k), k = lo - 1 .. hi
    C = np.maximum.accumulate(C)
    p = np.diff(C)
    if bounded:
        p[0] = C[1]
        p[-1] = 1.0 - C[-2] if K > 1 else 1.0
    return p


def expand_blocks(scales: np.ndarray, n: int, block: int) -> np.ndarray:
    """One float32 scale per entry from one per block of `block` entries."""
    return np.repeat(scales.astype(np.float32), block)[:n]


@dataclass
class UniformCells(IntervalCells):
    """Cells [(k - 1/2) step, (k + 1/2) step) in the model domain; x_hat = k step (* block scale).

    For stochastic rounding the symbol law is the density convolved with the rounding triangle
    (`stochastic_rounding_probs`); `edges` are then the nearest-rounding cells.
    """

    step: float
    bounds: tuple[int, int] | None = None
    stochastic: bool = False
    scales: np.ndarray | None = None
    block_size: int | None = None

    def edges(self, lo: int, hi: int) -> np.ndarray:
        k = check_range(lo, hi)
        return clip_edges((k - 0.5) * self.step, k, self.bounds)

    def probs(self, dist: Any, lo: int, hi: int, sub: int | None = None) -> np.ndarray:
        """The family's mass per cell; for stochastic rounding the triangle-convolved law on a
        grid of step / `sub` (default: as fine as 2^20 points allow, 16..256 per step)."""
        if not self.stochastic:
            return super().probs(dist, lo, hi)
        if sub is None:  # grid fine enough for the triangle, bounded in total size for wide tables
            sub = int(np.clip((1 << 20) // (hi - lo + 2), 16, 256))
        return stochastic_rounding_probs(dist, lo, hi, self.step, sub=sub, bounded=self.bounds is not None)

    def reconstruct(self, symbols: np.ndarray) -> np.ndarray:
        out = (symbols.astype(np.float64) * self.step).astype(np.float32)
        if self.scales is not None:
            out *= expand_blocks(self.scales, symbols.size, self.block_size)
        return out


def block_rms(a: np.ndarray, block: int) -> np.ndarray:
    """RMS of each block of `block` consecutive entries (last block may be short)."""
    n = a.size
    if n == 0:
        return np.zeros(0)
    nb = -(-n // block)
    pad = nb * block - n
    sq = np.square(a, dtype=np.float64)
    if pad:
        sq = np.concatenate([sq, np.zeros(pad)])
    sums = sq.reshape(nb, block).sum(axis=1)
    counts = np.full(nb, block, dtype=np.float64)
    counts[-1] = block - pad
    return np.sqrt(sums / counts)


_RMS_BLOCK = 1 << 16


def rms(a: np.ndarray) -> float:
    """sqrt(mean(a^2)) accumulated in float64 over 64k-entry blocks (no full-size temporary).

    The values are divided by max |a| first, so the result is right over the whole float range
    (float32 squares under- or overflow below 1e-19 / above 1e19; float64 ones above 1e154), and
    a float32 and a float64 copy of the same data give the same step on every BLAS kernel.
    """
    if a.size == 0:
        return 0.0
    m = max(float(a.max()), -float(a.min()))
    if not m > 0:
        return 0.0
    inv, total = 1.0 / m, 0.0
    for i in range(0, a.size, _RMS_BLOCK):
        b = a[i:i + _RMS_BLOCK].astype(np.float64)
        b *= inv
        total += float(np.dot(b, b))
    return m * math.sqrt(total / a.size)


FLOAT32_TINY = float(np.finfo(np.float32).tiny)
"""2^-126, the smallest normal float32: a step below it has no float32 reciprocal."""
SYMBOL_LIMIT = 2.0**62
"""|symbol| bound; a step that small for the input is refused (int64 symbols, with headroom)."""


def step32(step: float) -> float:
    """The step as sent (float32); 1.0 when it is zero (the input is all zeros, and any step
    reconstructs it), the smallest normal float32 when it is below it (values are divided by the
    power of two `scale_exponent` first, so that only happens when the step is tiny next to the
    largest value); ValueError when it overflows float32."""
    f32_max = float(np.finfo(np.float32).max)
    s = float(np.float32(step)) if math.isfinite(step) and abs(step) <= f32_max else math.inf
    if not math.isfinite(s):
        raise ValueError(f"quantize: the step {step} overflows float32 (it is sent as 32 bits); "
                         "use a smaller scale_mult")
    return max(s, FLOAT32_TINY) if s > 0 else 1.0


def given_step32(owner: str, step: float) -> float:
    """A step set by the caller, as sent (float32); ValueError unless it is a positive normal
    float32 (a subnormal step has no float32 reciprocal)."""
    ok = step is not None and math.isfinite(step) and 0 < step < float(np.finfo(np.float32).max)
    s = float(np.float32(step)) if ok else 0.0
    if not (s >= FLOAT32_TINY and math.isfinite(s)):
        raise ValueError(f"{owner}: step must be positive, finite and within float32's normal "
                         f"range [2^-126, 3.4e38] (it is sent as 32 bits), got {step}")
    return s


def check_symbol_range(k: Any, bound: float) -> None:
    """ValueError when the symbols (float, before the int64 cast) may leave +-`SYMBOL_LIMIT`:
    checked on k only when the cheap `bound` on |k| does not settle it."""
    if bound < SYMBOL_LIMIT:
        return
    if is_torch(k):
        big = k.numel() and float(k.abs().max()) >= SYMBOL_LIMIT
    else:
        big = k.size and max(-float(k.min()), float(k.max())) >= SYMBOL_LIMIT
    if big:
        raise ValueError(f"quantize: the step is too small for this input (symbols beyond 2^62, "
                         f"about {bound:.3g}); give a larger step")


def _quantile_abs(a: np.ndarray, q: float) -> float:
    if a.size == 0:
        return 0.0
    return float(np.quantile(np.abs(a), q))


class UniformQuantizer:
    """Uniform mid-tread quantizer k = round(x / step) (or stochastic rounding), x_hat = k step.

    Exactly one of:
    - `step`: the step itself (in block-scale units when `block_size` is set);
    - `scale_mult` (c): step = c * scale, scale = RMS of x (per layer or per block), or the fitted
      `family`'s scale parameter (per layer; family from `gradstats.fit`);
    - `levels` (L >= 3): symbols clipped to [-(L // 2), (L - 1) // 2] and
      step = q_|x|(clip_quantile) / ((L - 1) // 2), so the clip value is a level.

    Decoder data: the step (32 bits) and, per block, a bf16 scale (16 bits each); the scales used
    for reconstruction are the bf16-rounded ones, so the count is honest. An input outside
    float32's comfortable range (max |x| outside [2^-64, 2^64], `scale_exponent`) is quantized as
    x / 2^E (exact; unless `step` is given, which is in units of x): E costs 16 more bits, its
    presence signalled by the sign bit of the float32 step (a step is positive), so the symbols
    are the same at every power-of-two scale and numpy and torch agree at every scale.
    """

    def __init__(
        self,
        step: float | None = None,
        *,
        scale_mult: float | None = None,
        levels: int | None = None,
        clip_quantile: float = 0.999,
        family: Any = None,
        block_size: int | None = None,
        stochastic: bool = False,
        seed: int = 0,
    ) -> None:
        given = [v is not None for v in (step, scale_mult, levels)]
        if sum(given) != 1:
            raise ValueError("UniformQuantizer: give exactly one of step, scale_mult, levels")
        if step is not None:
            step = given_step32("UniformQuantizer", step)
        if scale_mult is not None and not (scale_mult > 0 and math.isfinite(scale_mult)):
            raise ValueError(f"UniformQuantizer: scale_mult must be positive, got {scale_mult}")
        if levels is not None and levels < 3:
            raise ValueError(f"UniformQuantizer: levels must be >= 3, got {levels}")
        if not 0 < clip_quantile <= 1:
            raise ValueError(f"UniformQuantizer: clip_quantile must be in (0, 1], got {clip_quantile}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"UniformQuantizer: block_size must be >= 1, got {block_size}")
        if family is not None and block_size is not None:
            raise ValueError("UniformQuantizer: a fitted-family scale is per layer; drop block_size")
        self.step, self.scale_mult, self.levels = step, scale_mult, levels
        self.clip_quantile, self.family = clip_quantile, family
        self.block_size, self.stochastic, self.seed = block_size, stochastic, seed
        self._calls = 0

    @property
    def name(self) -> str:
        if self.step is not None:
            s = f"uniform(step={self.step:g})"
        elif self.scale_mult is not None:
            fam = "" if self.family is None else f",{self.family if isinstance(self.family, str) else 'dist'}"
            s = f"uniform(c={self.scale_mult:g}{fam})"
        else:
            s = f"uniform(L={self.levels},q={self.clip_quantile:g})"
        if self.block_size:
            s += f"/block{self.block_size}"
        return s + ("/stochastic" if self.stochastic else "")

    def _bounds(self) -> tuple[int, int] | None:
        if self.levels is None:
            return None
        return -(self.levels // 2), (self.levels - 1) // 2

    def _scales(self, a: np.ndarray) -> np.ndarray | None:
        if self.block_size is None:
            return None
        s = block_rms(a, self.block_size).astype(np.float32)
        s = round_bf16(s)
        s[~(s > 0)] = 1.0  # all-zero (or underflowing) block: any scale reconstructs zeros
        return s

    def _exponent(self, x: Any) -> tuple[float, int]:
        """(max |x / 2^E|, E) of `abs_max_exponent` (finiteness checked); E = 0 with a given step
        (it is in units of x)."""
        m, e = abs_max_exponent(x)
        return (math.ldexp(m, e), 0) if self.step is not None else (m, e)

    def normalize(self, x: Any) -> np.ndarray:
        """Values in the model domain: x / 2^E per layer, x / 2^E / bf16 block scale per block (flat)."""
        a = as_float_array(x).ravel()
        a = scale_by_pow2(a, self._exponent(a)[1])
        s = self._scales(a)
        return a if s is None else a / expand_blocks(s, a.size, self.block_size)

    def _step(self, u: np.ndarray) -> float:
        """Step in model-domain units from the normalized values u."""
        if self.step is not None:
            return float(self.step)
        if self.scale_mult is not None:
            if self.family is not None:
                scale = float(fit_dist(u, self.family).params["scale"]) if u.size else 0.0
            else:
                scale = rms(u)
            step = self.scale_mult * scale
        else:
            step = _quantile_abs(u, self.clip_quantile) / ((self.levels - 1) // 2)
        # all-zero input: any step reconstructs zeros exactly
        return step32(step)

    def quantize(self, x: Any) -> Quantized:
        """Symbols k (flat int64) and decoder data for x (numpy or torch, any shape)."""
        m, e = self._exponent(x)
        if is_torch(x) and x.is_floating_point():
            return self._quantize_torch(x, m, e)
        shape = tuple(np.shape(x))
        a = scale_by_pow2(as_float_array(x).ravel(), e)
        scales = self._scales(a)
        u = a if scales is None else a / expand_blocks(scales, a.size, self.block_size)
        step = self._step(u)
        t = u * u.dtype.type(1.0 / step)  # float32 input stays float32 (half the memory traffic)
        check_symbol_range(t, self._symbol_bound(m, scales, step))
        if self.stochastic:
            # a tag in the seed keeps the noise apart from a user's default_rng(seed) data stream
            rng = np.random.default_rng([self.seed, self._calls, 0x5EEDC0DE])
            self._calls += 1
            t += rng.random(t.size, dtype=t.dtype)
            k = np.floor(t, out=t)
        else:
            k = np.rint(t, out=t)
        b = self._bounds()
        if b is not None:
            np.clip(k, b[0], b[1], out=k)
        return self._result(k.astype(np.int64), shape, step, scales, None, e, a.dtype == np.float64)

    def _symbol_bound(self, m: float, scales: np.ndarray | None, step: float) -> float:
        """A bound on |x / step| from max |x| = m: m / min block scale / step + 1 (0 when the
        levels clip)."""
        if self.levels is not None:
            return 0.0
        if scales is not None and scales.size:
            m /= float(scales.min())
        return m / step + 1.0

    def _quantize_torch(self, x: torch.Tensor, m: float, e: int) -> Quantized:
        shape = tuple(x.shape)
        xt = x.detach().reshape(-1)
        if xt.dtype != torch.float64:
            xt = xt.float()
        xt = scale_by_pow2(xt, e)
        scales = None
        if self.block_size is not None:
            # block RMS on the device; only one value per block goes to the host (bf16 rounding)
            B, n = self.block_size, xt.numel()
            nb = -(-n // B)
            sq = torch.nn.functional.pad(xt.double() ** 2, (0, nb * B - n)).view(nb, B).sum(dim=1)
            counts = torch.full((nb,), float(B), dtype=torch.float64, device=xt.device)
            if nb:
                counts[-1] = B - (nb * B - n)
            block = torch.sqrt(sq / counts).float().cpu().numpy()
            scales = round_bf16(block)
            scales[~(scales > 0)] = 1.0
            s = torch.from_numpy(scales).to(xt.device).repeat_interleave(B)[:n]
            u = xt / s.to(xt.dtype)
        else:
            u = xt
        if self.step is not None:
            step = float(self.step)
        elif self.scale_mult is not None and self.family is None:
            if u.device.type == "cpu":
                r = rms(u.numpy())  # the numpy path's own arithmetic: the same step, bit for bit
            elif u.numel():
                m = float(u.abs().max())
                r = m * float(torch.sqrt(torch.mean((u.double() / m) ** 2))) if m > 0 else 0.0
            else:
                r = 0.0
            step = step32(self.scale_mult * r)
        elif self.scale_mult is not None:
            step = self._step(u.cpu().numpy())
        else:
            n = u.numel()
            if n:
                # numpy's linear-interpolation quantile (as `_quantile_abs`), from two order
                # statistics: the same step, hence the same symbols, on every device
                h = (n - 1) * self.clip_quantile
                j = int(math.floor(h))
                a = u.abs()
                lo = float(a.kthvalue(j + 1).values)
                hi = float(a.kthvalue(min(j + 2, n)).values) if h > j else lo
                clip = lo + (h - j) * (hi - lo)
            else:
                clip = 0.0
            step = step32(clip / ((self.levels - 1) // 2))
        t = u * (1.0 / step)
        check_symbol_range(t, self._symbol_bound(m, scales, step))
        if self.stochastic:
            g = torch.Generator(device=xt.device).manual_seed(self.seed * 1_000_003 + self._calls)
            self._calls += 1
            k = torch.floor(t + torch.rand(t.shape, generator=g, device=t.device, dtype=t.dtype))
        else:
            k = torch.round(t)
        b = self._bounds()
        if b is not None:
            k = k.clamp(b[0], b[1])
        return self._result(k.to(torch.int64).cpu().numpy(), shape, step, scales, str(x.device), e,
                            xt.dtype == torch.float64)

    def _result(self, k, shape, step, scales, device, e=0, float64=False) -> Quantized:
        nb = 0 if scales is None else scales.size
        cells = UniformCells(step=step, bounds=self._bounds(), stochastic=self.stochastic,
                             scales=scales, block_size=self.block_size)
        return Quantized(symbols=k, shape=shape, method=self.name, cells=cells,
                         side_bits=FLOAT32_BITS + BF16_BITS * nb + (EXPONENT_BITS if e else 0),
                         torch_device=device, exponent=e, float64=bool(e and float64))

    def dequantize(self, q: Quantized) -> Any:
        """x_hat = k * step (* block scale)."""
        return q.dequantize()
