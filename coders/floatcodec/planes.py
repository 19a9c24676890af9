"""The split of a float tensor into its uint8 bit planes, the join back, and the exponent-0 split.

The planes are the bits (`formats.py` says which fields each gathers), so every bit pattern
round-trips: NaN payloads, -0.0, subnormals, Inf. On CUDA the split runs on the device (torch bit
ops on the int16 / int32 view); the join runs where the result is wanted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from coders.floatcodec.formats import FloatFormat, as_float_tensor, float_format


def device_planes(t: torch.Tensor, fmt: FloatFormat) -> list[torch.Tensor]:
    """The uint8 planes of t, computed where t lives (torch bit ops on the int16 / int32 view).

    Arithmetic shifts of the signed view are masked to each field's width, so sign extension never
    leaks into a plane.
    """
    bits = t.reshape(-1).view(fmt.int_dtype)
    planes = []
    for _, fields in fmt.planes:
        shift = sum(w for _, w in fields)
        p = None
        for lo, w in fields:
            shift -= w
            f = torch.bitwise_and(torch.bitwise_right_shift(bits, lo), (1 << w) - 1)
            f = torch.bitwise_left_shift(f, shift) if shift else f
            p = f if p is None else torch.bitwise_or(p, f)
        planes.append(p.to(torch.uint8))
    return planes


def split_planes(x: Any, dtype: Any = None) -> dict[str, np.ndarray]:
    """The planes of x (see `formats.py`) as host uint8 arrays, by name, in the format's order."""
    t = as_float_tensor(x, dtype)
    fmt = float_format(t.dtype)
    return {name: p.cpu().numpy() for (name, _), p in zip(fmt.planes, device_planes(t, fmt), strict=True)}


def join_planes(planes: Sequence[np.ndarray], fmt: FloatFormat, shape: Sequence[int],
                device: Any = None) -> torch.Tensor:
    """Inverse of `split_planes`: the tensor of `fmt` and `shape`, assembled on `device`."""
    if device is None:
        # on the host with numpy, on the unsigned view: no widening, no sign fix-up; a device
        # (also "cpu") takes the torch path, which runs where the result is wanted
        ut = np.uint16 if fmt.bits == 16 else np.uint32
        out = np.zeros(math.prod(shape), dtype=ut)
        for (_, fields), p in zip(fmt.planes, planes, strict=True):
            v = np.asarray(p).astype(ut)
            shift = sum(w for _, w in fields)
            for lo, w in fields:
                shift -= w
                f = (v >> ut(shift)) & ut((1 << w) - 1) if shift else v & ut((1 << w) - 1)
                out |= f << ut(lo)
        signed = out.view(np.int16 if fmt.bits == 16 else np.int32)
        return torch.from_numpy(signed).view(fmt.torch_dtype).reshape(tuple(shape))
    acc = torch.zeros(math.prod(shape), dtype=torch.int64, device=device)
    for (_, fields), p in zip(fmt.planes, planes, strict=True):
        v = torch.from_numpy(np.ascontiguousarray(p)).to(device=device, dtype=torch.int64)
        shift = sum(w for _, w in fields)
        for lo, w in fields:
            shift -= w
            acc |= ((v >> shift) & ((1 << w) - 1)) << lo
    half = 1 << (fmt.bits - 1)
    acc = torch.where(acc >= half, acc - 2 * half, acc)  # unsigned bit pattern -> the signed view
    return acc.to(fmt.int_dtype).view(fmt.torch_dtype).reshape(tuple(shape))


def sub_planes(t: torch.Tensor, fmt: FloatFormat, on_device: bool | None = None
               ) -> list[tuple[str, int, Any]]:
    """(name, width, values) of what is coded: the exponent plane, then every other plane split
    into its entries with a nonzero exponent and those with exponent 0 (zeros and subnormals).

    The decoder has the exponents first, so the split costs nothing to send; it keeps the zeros of
    a zero-heavy layer from spreading their mass over the mantissa planes. Values are numpy arrays
    for a CPU tensor and tensors on t's device otherwise (the split runs there); `on_device=True`
    keeps the torch path on a CPU too.
    """
    planes: list[Any] = device_planes(t, fmt)
    on_host = planes[0].device.type == "cpu" if on_device is None else not on_device
    if on_host:  # numpy's compress is several times faster than torch's boolean index on a CPU
        planes = [p.numpy() for p in planes]
    zero = planes[0] == 0
    n_zero = int(zero.sum())
    out = [(fmt.planes[0][0], fmt.plane_width(0), planes[0])]
    for i in range(1, len(planes)):
        name, width, p = fmt.planes[i][0], fmt.plane_width(i), planes[i]
        if n_zero == 0:
            nonzero_part, zero_part = p, p[:0]
        elif on_host:
            nonzero_part, zero_part = np.compress(~zero, p), np.compress(zero, p)
        else:
            nonzero_part, zero_part = p[~zero], p[zero]
        out.append((name, width, nonzero_part))
        out.append((f"{name}@exponent0", width, zero_part))
    return out


def merge_sub_planes(zero: np.ndarray, nonzero_part: np.ndarray, zero_part: np.ndarray) -> np.ndarray:
    """Inverse of one split of `sub_planes`: the plane, `zero_part` where `zero` (exponent 0) holds."""
    if not zero_part.size:
        return nonzero_part
    p = np.empty(zero.size, dtype=np.uint8)
    p[~zero], p[zero] = nonzero_part, zero_part
    return p
