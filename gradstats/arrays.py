"""The array backend of the fits: numpy arrays and torch tensors (CUDA included) behind one set of
reductions, plus the sample primitives every estimator shares.

Every pass over the data is a chunked reduction with float64 accumulators (`chunked_sum`), so
float32 / float16 / bfloat16 input is never copied whole to float64, and torch tensors are reduced
on their own device; only scalars come back to the host. `chunked_sum_f32` is the float32-term
variant the fast GenNorm passes use. `prepare` is the one place input is flattened and checked.
"""
from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK = 1 << 16
"""Entries per float64 chunk in the reductions (512 KiB on the host: a pass's few temporaries stay
in a 2 MiB L2 cache, which halves the cost of a pass against 2 MiB chunks)."""
DEVICE_CHUNK = 1 << 22
"""Entries per chunk of a torch tensor on an accelerator (fewer, larger kernels)."""
SUBSAMPLE = 1 << 16
"""Size of the random subsample used for the warm start of iterative fits on large inputs."""


class ConstantSample(Exception):
    """The sample is constant: no scale can be fitted (`value` is that constant)."""

    def __init__(self, value: float):
        super().__init__(value)
        self.value = value


def parse_loc(loc: str | float) -> float | None:
    """The fixed location a fit holds (a finite number), or None for loc='fit' (estimate it)."""
    if isinstance(loc, str):
        if loc != "fit":
            raise ValueError(f"loc must be 'fit' or a number, got {loc!r}")
        return None
    value = float(loc)
    if not math.isfinite(value):
        raise ValueError(f"loc must be finite, got {value}")
    return value



def is_torch(x: Any) -> bool:
    """True for a torch tensor (torch is never imported here: a tensor implies it is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def array_namespace(x: Any) -> Any:
    """The module whose functions apply to x: torch for a tensor, else numpy."""
    return sys.modules["torch"] if is_torch(x) else np


def as_vector(x: Any) -> Any:
    """x as a 1-D numpy array or torch tensor in its own dtype (a view where possible)."""
    if is_torch(x):
        torch = sys.modules["torch"]
        if x.is_complex() or not (x.is_floating_point() or x.dtype.is_signed or x.dtype == torch.bool):
            raise ValueError(f"fit: expected a real tensor, got dtype {x.dtype}")
        x = x.detach().reshape(-1)
        return x if x.is_floating_point() else x.double()
    x = np.asarray(x)
    if x.dtype.kind == "c" or x.dtype.kind not in "fiub":
        raise ValueError(f"fit: expected real numbers, got dtype {x.dtype}")
    x = x.reshape(-1)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def f64_chunks(x: Any, chunk: int = CHUNK) -> Iterable[Any]:
    torch_in = is_torch(x)
    size = DEVICE_CHUNK if torch_in and x.device.type != "cpu" else chunk
    for i in range(0, len(x), size):
        c = x[i : i + size]
        yield c.double() if torch_in else c.astype(np.float64, copy=False)


def chunked_sum(x: Any, fn: Callable[[Any], tuple], k: int) -> list[float]:
    """Sum fn(chunk) (a k-tuple of scalars) over float64 chunks of x; one host sync at the end."""
    tot: list[Any] = [0.0] * k
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for c in f64_chunks(x):
            for j, v in enumerate(fn(c)):
                tot[j] = tot[j] + v
    return [float(t) for t in tot]


def low_precision(x: Any) -> bool:
    """True for float32 / float16 / bfloat16 data, which the fast passes may reduce in float32."""
    if is_torch(x):
        torch = sys.modules["torch"]
        return x.dtype in (torch.float32, torch.float16, torch.bfloat16)
    return x.dtype in (np.float32, np.float16)


def chunked_sum_f32(x: Any, fn: Callable[[Any], tuple], k: int) -> list[float]:
    """Like `chunked_sum` with float32 chunks; fn must return float64 sums (see `sum64`)."""
    torch_in = is_torch(x)
    size = DEVICE_CHUNK if torch_in and x.device.type != "cpu" else CHUNK
    tot: list[Any] = [0.0] * k
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for i in range(0, len(x), size):
            c = x[i : i + size]
            for j, v in enumerate(fn(c.float() if torch_in else c.astype(np.float32, copy=False))):
                tot[j] = tot[j] + v
    return [float(t) for t in tot]


def sum64(a: Any) -> Any:
    """Sum with a float64 accumulator."""
    return a.sum(dtype=sys.modules["torch"].float64) if is_torch(a) else a.sum(dtype=np.float64)


def count_nonfinite(x: Any) -> tuple[int, int]:
    """(number of NaN, number of +-Inf) in x, chunked in its own dtype."""
    xp = array_namespace(x)
    bad = 0
    for i in range(0, len(x), CHUNK * 4):
        c = x[i : i + CHUNK * 4]
        bad = bad + (~xp.isfinite(c)).sum()
    if int(bad) == 0:
        return 0, 0
    n_nan = int(xp.isnan(x).sum())
    return n_nan, int(bad) - n_nan


def prepare(x: Any, nan_policy: str = "raise") -> tuple[Any, int]:
    """Flatten x and check it is finite: (vector, number of non-finite entries omitted).

    nan_policy "raise" raises ValueError naming the NaN and Inf counts; "omit" drops them and
    reports the count (the fits carry it in `n_omitted` and a flag).
    """
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    v = as_vector(x)
    # fast path: a sum of finite entries that stays finite proves every entry finite (a NaN or Inf
    # makes the sum one); a sum that overflows falls through to the exact count below. On the host
    # the sum runs in the data's own precision (float16 in float32), twice as fast as in float64
    with np.errstate(invalid="ignore", over="ignore"):
        if is_torch(v):
            total = v.sum(dtype=sys.modules["torch"].float64)
        else:
            total = v.sum(dtype=np.float32 if v.dtype == np.float16 else None)
    if math.isfinite(float(total)):
        return v, 0
    n_nan, n_inf = count_nonfinite(v)
    if n_nan + n_inf == 0:
        return v, 0
    if nan_policy == "raise":
        raise ValueError(f"input contains {n_nan} NaN and {n_inf} Inf values out of {len(v)} "
                         "(pass nan_policy='omit' to drop them)")
    return v[array_namespace(v).isfinite(v)], n_nan + n_inf


def count_equal(x: Any, value: float) -> int:
    """Number of entries exactly equal to value (chunked, in x's own dtype)."""
    if is_torch(x):
        total = 0
        for i in range(0, len(x), DEVICE_CHUNK):
            total += int((x[i : i + DEVICE_CHUNK] == value).sum())
        return total
    return int(np.count_nonzero(x == value))


def median(x: Any) -> float:
    """Sample median (torch: the lower of the two middle values, as torch.median)."""
    if is_torch(x):
        return float(x.median())
    n = len(x)
    if n == 0:
        return math.nan
    # np.median's value (the two middle order statistics averaged by np.mean in x's dtype) from
    # one single-kth partition and a max: numpy's partition with the two kth np.median asks for
    # costs ~8x one with a single kth (12 ms against 1.4 ms at 1e6 float32 entries)
    k = n // 2
    part = np.partition(x, k)
    if n % 2:
        return float(part[k])
    return float(np.mean(np.array([part[:k].max(), part[k]], dtype=x.dtype)))


@functools.lru_cache(maxsize=8)
def _subsample_index(n: int, m: int, seed: int) -> np.ndarray:
    """The sorted indices of `subsample` (read-only; a capture's layers repeat a few sizes, so
    the draw and its sort are made once per size)."""
    idx = np.sort(np.random.default_rng(seed).integers(0, n, m))
    idx.setflags(write=False)
    return idx


def subsample(x: Any, m: int, seed: int = 0) -> Any:
    """m entries of x drawn uniformly with replacement, as float64, on x's device, sorted by index."""
    idx = _subsample_index(len(x), m, seed)
    if is_torch(x):
        torch = sys.modules["torch"]
        return x[torch.as_tensor(np.array(idx), device=x.device)].double()  # (a writable copy for torch)
    return x[idx].astype(np.float64)


@dataclass
class Moments:
    """Central sums around `center`: n, mean offset, E|d|, E d^2, E d^4, max |d|, zeros of d."""

    n: int
    center: float
    mean: float
    abs_mean: float
    m2: float
    m4: float
    max_abs: float
    n_zero: int


def central_moments(x: Any, center: float) -> Moments:
    """`Moments` of x around `center` in one chunked pass (plus its max and min)."""
    def fn(c: Any) -> tuple:
        d = c - center
        a = abs(d)
        d2 = d * d
        return d.sum(), a.sum(), d2.sum(), (d2 * d2).sum(), (a == 0).sum()

    n = len(x)
    s1, sa, s2, s4, nz = chunked_sum(x, fn, 5)
    mx = float(abs(x.max().double() - center)) if is_torch(x) else float(abs(np.float64(x.max()) - center))
    mn = float(abs(x.min().double() - center)) if is_torch(x) else float(abs(np.float64(x.min()) - center))
    return Moments(n, center, s1 / n, sa / n, s2 / n, s4 / n, max(mx, mn), int(nz))


TINY = 1e-300  # exact zeros of |x - mu| are clamped here: tiny^beta is below 1e-13 for beta >= 0.05


def clamp_min_(d: Any, v: float) -> Any:
    """d = max(d, v) in place."""
    if is_torch(d):
        return d.clamp_(min=v)
    return np.maximum(d, v, out=d)


def log_abs_dev(ch: Any, mu: float, c: float) -> Any:
    """log(max(|ch - mu| / c, 1e-300)) in a new float64 buffer."""
    xp = array_namespace(ch)
    d = ch - mu
    xp.abs(d, out=d)
    d *= 1.0 / c
    clamp_min_(d, TINY)
    return xp.log(d, out=d)


def log_abs_dev_zeroed(ch: Any, mu: float, c: float) -> tuple[Any, Any]:
    """(log(|ch - mu| / c) in ch's precision with 0 at exact zeros, the mask of those zeros).

    A zero's term a^b = exp(b * 0) = 1 must be subtracted by the caller (one count per zero)
    instead of clamping, which float32 cannot do (1e-300 underflows)."""
    xp = array_namespace(ch)
    d = ch - mu
    xp.abs(d, out=d)
    d *= 1.0 / c
    zero = d == 0
    if zero.any():
        d = xp.where(zero, 1.0, d)
    return xp.log(d, out=d), zero
