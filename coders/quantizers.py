"""Scalar quantizers: values -> integer symbols plus what the decoder needs to reconstruct them.

Every quantizer has `quantize(x) -> Quantized` and `dequantize(Quantized) -> array`. A `Quantized`
knows its symbols (flat `np.int64`), the decoder data and its cost in bits (`side_bits`), and the
cells of each symbol in the *model domain* (`edges(lo, hi)`), which is where a fitted family turns
into a probability table (`coders.models.family_model`). The model domain is the input itself for
per-layer scaling and the input divided by its block scale for per-block scaling
(`quantizer.normalize(x)` gives those values, e.g. for fitting).

- `UniformQuantizer`: mid-tread, k = round(x / step); step set directly, as c * scale (RMS or a
  fitted family's scale), or from a number of levels with clipping at a quantile of |x|;
  optional stochastic (unbiased) rounding k = floor(x / step + u), u ~ U[0, 1), E[k step] = x;
  per-layer or per-block (e.g. 128 or 4096 entries, bf16 block scales) scaling.
- `LloydMaxQuantizer`: the MSE-optimal L-level quantizer for a fitted family's density
  (Lloyd 1982; Max 1960): thresholds are midpoints of levels, levels are cell centroids.
- `EntropyConstrainedQuantizer`: entropy-constrained uniform quantizer (Chou, Lookabaugh & Gray
  1989): reconstruction points k * step, assignment minimising (x - k step)^2 + lam step^2 l_k with
  l_k = -log2 p_k iterated to a fixed point, i.e. thresholds shifted towards the rarer symbol.

Inputs are numpy arrays or torch tensors (any device); `UniformQuantizer` computes on the tensor's
device, the others on the host. Non-finite input raises ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # torch is a dependency, but keep numpy-only use importable
    import torch
except ImportError:  # pragma: no cover
    torch = None

FLOAT32_BITS = 32
BF16_BITS = 16


def _is_torch(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _check_finite(x: Any) -> None:
    if _is_torch(x):
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("quantize: input contains NaN or Inf")
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":
            raise ValueError(f"quantize: expected a real-valued array, got dtype {a.dtype}")
        # two reductions instead of a boolean array: NaN propagates through min, Inf shows in min/max
        if a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
            raise ValueError("quantize: input contains NaN or Inf")


def _as_float_array(x: Any) -> np.ndarray:
    """Host float array (float32 stays float32, anything else becomes float64)."""
    if _is_torch(x):
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


def round_bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), returned as float32."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


@dataclass(frozen=True)
class Distortion:
    """Quantization error: MSE and SNR = 10 log10(sum x^2 / sum (x - xhat)^2) in dB."""

    mse: float
    snr_db: float


def distortion(x: Any, xhat: Any) -> Distortion:
    """MSE and SNR (dB) of a reconstruction `xhat` of `x` (inf SNR for an exact one)."""
    a = _as_float_array(x).ravel().astype(np.float64)
    b = _as_float_array(xhat).ravel().astype(np.float64)
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


@dataclass
class Quantized:
    """Integer symbols plus the decoder data; `side_bits` is what the decoder data costs.

    Reconstruction: uniform `x = k * step * scale_b`; table (Lloyd-Max) `x = levels[k - offset]`.
    `thresholds` (model domain) are the cell boundaries between consecutive symbols starting at
    symbol `offset`; `bounds` is the closed symbol range when the quantizer clips.
    """

    symbols: np.ndarray
    shape: tuple
    method: str
    step: float = 1.0
    scales: np.ndarray | None = None
    block_size: int | None = None
    levels: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    offset: int = 0
    bounds: tuple[int, int] | None = None
    stochastic: bool = False
    side_bits: int = 0
    edges_side_bits: int = 0
    torch_device: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.symbols.size)

    def edges(self, lo: int, hi: int) -> np.ndarray:
        """Cell boundaries (model domain) of symbols lo..hi: length hi - lo + 2.

        Cells of a clipping quantizer's end symbols extend to -inf / +inf. For stochastic rounding
        these are the nearest-rounding cells; `family_model` uses the exact triangle-convolved law.
        """
        if hi < lo:
            raise ValueError(f"edges: empty symbol range [{lo}, {hi}]")
        k = np.arange(lo, hi + 2, dtype=np.float64)  # boundary j sits below symbol j
        if self.levels is not None:
            # table quantizer: boundary below symbol j is thresholds[j - offset - 1]
            j = (k - self.offset - 1).astype(np.int64)
            t = np.concatenate([[-np.inf], self.thresholds, [np.inf]])
            e = t[np.clip(j + 1, 0, len(t) - 1)]
        else:
            e = (k - 0.5) * self.step
            if self.thresholds is not None and len(self.thresholds):
                # boundary between offset + i and offset + i + 1 is thresholds[i]
                i = (k - self.offset - 1).astype(np.int64)
                t = self.thresholds
                inside = (i >= 0) & (i < len(t))
                e[inside] = t[i[inside]]
                below, above = i < 0, i >= len(t)
                e[below] = np.minimum(e[below], t[0])
                e[above] = np.maximum(e[above], t[-1])
        if self.bounds is not None:
            e[k <= self.bounds[0]] = -np.inf
            e[k > self.bounds[1]] = np.inf
        return e

    def distortion(self, x: Any) -> Distortion:
        """MSE and SNR of this reconstruction against the original input x."""
        return distortion(x, self.dequantize())

    def dequantize(self) -> Any:
        """Reconstruct the values (numpy, or torch on the original device for torch input)."""
        k = self.symbols
        if self.levels is not None:
            idx = k - self.offset
            if idx.size and (idx.min() < 0 or idx.max() >= len(self.levels)):
                raise ValueError("dequantize: symbol outside the level table")
            out = self.levels[idx].astype(np.float32)
        else:
            out = (k.astype(np.float64) * self.step).astype(np.float32)
            if self.scales is not None:
                out *= _expand_blocks(self.scales, self.n, self.block_size)
        out = out.reshape(self.shape)
        if self.torch_device is not None:
            return torch.from_numpy(out).to(self.torch_device)
        return out


def _expand_blocks(scales: np.ndarray, n: int, block: int) -> np.ndarray:
    return np.repeat(scales.astype(np.float32), block)[:n]


def _block_rms(a: np.ndarray, block: int) -> np.ndarray:
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


def _rms(a: np.ndarray) -> float:
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


_RMS_BLOCK = 1 << 16


def _step32(step: float) -> float:
    """The step as sent (float32); 1.0 when it is zero, not finite or underflows float32 (the
    input is then all zeros at float32 precision, and any step reconstructs it as well)."""
    s = float(np.float32(step)) if math.isfinite(step) else 0.0
    return s if s > 0 and math.isfinite(s) else 1.0


def _given_step32(owner: str, step: float) -> float:
    """A step set by the caller, as sent (float32); ValueError unless it is a positive float32."""
    ok = step is not None and math.isfinite(step) and 0 < step < float(np.finfo(np.float32).max)
    s = float(np.float32(step)) if ok else 0.0
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"{owner}: step must be positive, finite and within float32's range "
                         f"(it is sent as 32 bits), got {step}")
    return s


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
    for reconstruction are the bf16-rounded ones, so the count is honest.
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
            step = _given_step32("UniformQuantizer", step)
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
        s = _block_rms(a, self.block_size).astype(np.float32)
        s = round_bf16(s)
        s[~(s > 0)] = 1.0  # all-zero (or underflowing) block: any scale reconstructs zeros
        return s

    def normalize(self, x: Any) -> np.ndarray:
        """Values in the model domain: x per layer, x / bf16 block scale per block (flat)."""
        a = _as_float_array(x).ravel()
        s = self._scales(a)
        return a if s is None else a / _expand_blocks(s, a.size, self.block_size)

    def _step(self, u: np.ndarray) -> float:
        """Step in model-domain units from the normalized values u."""
        if self.step is not None:
            return float(self.step)
        if self.scale_mult is not None:
            if self.family is not None:
                from coders.models import fit_dist

                scale = float(fit_dist(u, self.family).params["scale"]) if u.size else 0.0
            else:
                scale = _rms(u)
            step = self.scale_mult * scale
        else:
            step = _quantile_abs(u, self.clip_quantile) / ((self.levels - 1) // 2)
        # all-zero input: any step reconstructs zeros exactly
        return _step32(step)

    def quantize(self, x: Any) -> Quantized:
        """Symbols k (flat int64) and decoder data for x (numpy or torch, any shape)."""
        _check_finite(x)
        if _is_torch(x) and x.is_floating_point():
            return self._quantize_torch(x)
        shape = tuple(np.shape(x))
        a = _as_float_array(x).ravel()
        scales = self._scales(a)
        u = a if scales is None else a / _expand_blocks(scales, a.size, self.block_size)
        step = self._step(u)
        t = u * u.dtype.type(1.0 / step)  # float32 input stays float32 (half the memory traffic)
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
        return self._result(k.astype(np.int64), shape, step, scales, None)

    def _quantize_torch(self, x: torch.Tensor) -> Quantized:
        shape = tuple(x.shape)
        xt = x.detach().reshape(-1)
        if xt.dtype != torch.float64:
            xt = xt.float()
        scales = None
        if self.block_size is not None:
            # block RMS on the device; only one value per block goes to the host (bf16 rounding)
            B, n = self.block_size, xt.numel()
            nb = -(-n // B)
            sq = torch.nn.functional.pad(xt.double() ** 2, (0, nb * B - n)).view(nb, B).sum(dim=1)
            counts = torch.full((nb,), float(B), dtype=torch.float64, device=xt.device)
            if nb:
                counts[-1] = B - (nb * B - n)
            rms = torch.sqrt(sq / counts).float().cpu().numpy()
            scales = round_bf16(rms)
            scales[~(scales > 0)] = 1.0
            s = torch.from_numpy(scales).to(xt.device).repeat_interleave(B)[:n]
            u = xt / s.to(xt.dtype)
        else:
            u = xt
        if self.step is not None:
            step = float(self.step)
        elif self.scale_mult is not None and self.family is None:
            if u.device.type == "cpu":
                rms = _rms(u.numpy())  # the numpy path's own arithmetic: the same step, bit for bit
            elif u.numel():
                m = float(u.abs().max())
                rms = m * float(torch.sqrt(torch.mean((u.double() / m) ** 2))) if m > 0 else 0.0
            else:
                rms = 0.0
            step = self.scale_mult * rms
            step = _step32(step)
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
            step = clip / ((self.levels - 1) // 2)
            step = _step32(step)
        t = u * (1.0 / step)
        if self.stochastic:
            g = torch.Generator(device=xt.device).manual_seed(self.seed * 1_000_003 + self._calls)
            self._calls += 1
            k = torch.floor(t + torch.rand(t.shape, generator=g, device=t.device, dtype=t.dtype))
        else:
            k = torch.round(t)
        b = self._bounds()
        if b is not None:
            k = k.clamp(b[0], b[1])
        q = self._result(k.to(torch.int64).cpu().numpy(), shape, step, scales, str(x.device))
        return q

    def _result(self, k, shape, step, scales, device) -> Quantized:
        nb = 0 if scales is None else scales.size
        return Quantized(
            symbols=k,
            shape=shape,
            method=self.name,
            step=step,
            scales=scales,
            block_size=self.block_size,
            bounds=self._bounds(),
            stochastic=self.stochastic,
            side_bits=FLOAT32_BITS + BF16_BITS * nb,
            torch_device=device,
        )

    def dequantize(self, q: Quantized) -> Any:
        """x_hat = k * step (* block scale)."""
        return q.dequantize()


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


class LloydMaxQuantizer:
    """Lloyd-Max (MSE-optimal) L-level quantizer for a fitted family's density.

    `family`: a family name for `gradstats.fit` (fitted to x at each call) or a distribution object
    with cdf/ppf (used as is). Symbols are level indices shifted so that the middle level is 0:
    k in [-(L // 2), L - 1 - L // 2]. Decoder data: the L levels as float32 (reconstruction uses
    the float32 values; thresholds are their midpoints).
    """

    def __init__(self, levels: int = 16, family: Any = "gennorm", iters: int = 200) -> None:
        if levels < 2:
            raise ValueError(f"LloydMaxQuantizer: levels must be >= 2, got {levels}")
        self.levels, self.family, self.iters = levels, family, iters

    @property
    def name(self) -> str:
        fam = self.family if isinstance(self.family, str) else type(self.family).__name__
        return f"lloyd-max(L={self.levels},{fam})"

    def normalize(self, x: Any) -> np.ndarray:
        return _as_float_array(x).ravel()

    def design(self, dist: Any) -> tuple[np.ndarray, np.ndarray]:
        """(float32-rounded levels, thresholds) for `dist`."""
        r, _ = lloyd_max_levels(dist, self.levels, iters=self.iters)
        r = r.astype(np.float32).astype(np.float64)
        return r, 0.5 * (r[1:] + r[:-1])

    def quantize(self, x: Any) -> Quantized:
        _check_finite(x)
        shape = tuple(np.shape(x))
        device = str(x.device) if _is_torch(x) else None
        a = _as_float_array(x).ravel()
        if a.size == 0:
            raise ValueError("LloydMaxQuantizer: cannot design levels from an empty input")
        if float(np.max(a)) == float(np.min(a)):
            raise ValueError("LloydMaxQuantizer: input has one distinct value; no density to fit")
        from coders.models import fit_dist

        dist = fit_dist(a, self.family)
        r, t = self.design(dist)
        off = -(self.levels // 2)
        k = np.searchsorted(t, a, side="right").astype(np.int64) + off
        return Quantized(
            symbols=k, shape=shape, method=self.name, levels=r, thresholds=t, offset=off,
            bounds=(off, off + self.levels - 1), side_bits=FLOAT32_BITS * self.levels,
            torch_device=device, info={"dist": dist},
        )

    def dequantize(self, q: Quantized) -> Any:
        return q.dequantize()


class EntropyConstrainedQuantizer:
    """Entropy-constrained uniform scalar quantizer (Chou, Lookabaugh & Gray, IEEE T-ASSP 1989).

    Reconstruction points k * step; x goes to the k minimising (x - k step)^2 + lam step^2 l_k with
    l_k = -log2 p_k, iterated (on a subsample) to a fixed point. For neighbouring symbols that is a
    threshold t_k = step (k + 1/2 + lam (l_{k+1} - l_k) / 2): cells of rare symbols shrink, the
    zero cell grows (a dead zone). lam = 0 is plain rounding. Step as in `UniformQuantizer`
    (`step` or `scale_mult` times the RMS). The decoder needs only the step (32 bits); a
    family model needs the thresholds too (`edges_side_bits`: they are float32, 32 bits each, plus
    32 bits each for the first symbol and the threshold count).
    """

    def __init__(self, step: float | None = None, *, scale_mult: float | None = None, lam: float = 0.2,
                 iters: int = 10, sample: int = 1 << 18, seed: int = 0) -> None:
        if (step is None) == (scale_mult is None):
            raise ValueError("EntropyConstrainedQuantizer: give exactly one of step, scale_mult")
        if step is not None:
            step = _given_step32("EntropyConstrainedQuantizer", step)
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

    def normalize(self, x: Any) -> np.ndarray:
        return _as_float_array(x).ravel()

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
        _check_finite(x)
        shape = tuple(np.shape(x))
        device = str(x.device) if _is_torch(x) else None
        a = _as_float_array(x).ravel()
        if self.step is not None:
            step = float(self.step)
        else:
            rms = _rms(a)
            step = _step32(self.scale_mult * rms)
        if a.size == 0:
            k_lo, t = 0, np.zeros(0)
        else:
            k_lo, t = self.design(a, step)
        k = self._assign(a, step, k_lo, t)
        return Quantized(
            symbols=k, shape=shape, method=self.name, step=step, thresholds=t, offset=k_lo,
            side_bits=FLOAT32_BITS, edges_side_bits=FLOAT32_BITS * (len(t) + 2),
            torch_device=device,
        )

    def dequantize(self, q: Quantized) -> Any:
        return q.dequantize()
