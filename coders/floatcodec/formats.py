"""The IEEE 754 formats the float codec takes (bf16, fp16, fp32) and how each is cut into planes.

A plane gathers bit fields of the format, at most 8 bits (the sign travels with the top mantissa
bits, which leaves the exponent a plane of its own):

    bf16: exponent[14:7] (8 bits)  sign_mantissa[15, 6:0] (8)
    fp16: exponent[14:10] (5)      sign_mantissa_hi[15, 9:8] (3)  mantissa_lo[7:0] (8)
    fp32: exponent[30:23] (8)      sign_mantissa_hi[31, 22:16] (8) mantissa_mid[15:8] (8) mantissa_lo[7:0] (8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coders.wire import BF16_BITS, FLOAT16_BITS, FLOAT32_BITS


@dataclass(frozen=True)
class FloatFormat:
    """One IEEE 754 format: torch dtype, integer view, width, code in the blob, and its planes.

    A plane is a name and the bit fields it gathers, (lowest bit, width) from its most to its least
    significant bits; the planes partition the format's bits.
    """

    name: str
    torch_dtype: torch.dtype
    int_dtype: torch.dtype
    bits: int
    planes: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]
    code: int

    def plane_width(self, i: int) -> int:
        return sum(w for _, w in self.planes[i][1])


FORMATS: dict[str, FloatFormat] = {
    "bf16": FloatFormat("bf16", torch.bfloat16, torch.int16, BF16_BITS,
                        (("exponent", ((7, 8),)), ("sign_mantissa", ((15, 1), (0, 7)))), 1),
    "fp16": FloatFormat("fp16", torch.float16, torch.int16, FLOAT16_BITS,
                        (("exponent", ((10, 5),)), ("sign_mantissa_hi", ((15, 1), (8, 2))),
                         ("mantissa_lo", ((0, 8),))), 2),
    "fp32": FloatFormat("fp32", torch.float32, torch.int32, FLOAT32_BITS,
                        (("exponent", ((23, 8),)), ("sign_mantissa_hi", ((31, 1), (16, 7))),
                         ("mantissa_mid", ((8, 8),)), ("mantissa_lo", ((0, 8),))), 3),
}
_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "half": "fp16",
            "fp32": "fp32", "float32": "fp32", "float": "fp32"}
_BY_TORCH = {f.torch_dtype: f for f in FORMATS.values()}
BY_CODE: dict[int, FloatFormat] = {f.code: f for f in FORMATS.values()}
"""The format of each dtype code of the blob."""


def float_format(dtype: Any) -> FloatFormat:
    """The `FloatFormat` of a name ("bf16", "fp16", "fp32" and aliases) or a torch / numpy dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype in _BY_TORCH:
            return _BY_TORCH[dtype]
    elif isinstance(dtype, str) and dtype.lower() in _ALIASES:
        return FORMATS[_ALIASES[dtype.lower()]]
    else:
        try:
            nd = np.dtype(dtype)
        except TypeError:
            nd = None
        if nd == np.float16:
            return FORMATS["fp16"]
        if nd == np.float32:
            return FORMATS["fp32"]
    raise ValueError(f"float codec: unsupported dtype {dtype!r}; use one of bf16, fp16, fp32 "
                     "(torch.bfloat16, torch.float16, torch.float32, numpy float16 / float32)")


def as_float_tensor(x: Any, dtype: Any = None) -> torch.Tensor:
    """x as a contiguous torch tensor of a supported format (same device; numpy without a copy).

    With `dtype`, x is cast to it (round to nearest even); without, x must already be bf16 / fp16 /
    fp32 (a float64 array needs `dtype`: the codec never rounds silently).
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if dtype is None:
            float_format(a.dtype)  # raises for float64, ints, ...
        t = torch.from_numpy(np.ascontiguousarray(a))
    if dtype is not None:
        fmt = float_format(dtype)
        if t.is_complex():
            raise ValueError(f"float codec: cannot cast complex {t.dtype} to {fmt.name}")
        t = t.to(fmt.torch_dtype)
    else:
        float_format(t.dtype)
    return t.contiguous()


def raw_bytes(t: torch.Tensor, fmt: FloatFormat) -> bytes:
    """The format's little-endian bytes of t (what a raw all-reduce sends)."""
    return t.reshape(-1).view(fmt.int_dtype).cpu().numpy().astype(f"<i{fmt.bits // 8}").tobytes()
