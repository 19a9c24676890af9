"""Bit patterns for the float codec tests: tensors from raw bits, their bits, the specials, raw sizes."""

from __future__ import annotations

import numpy as np
import torch

from coders.floatcodec import FORMATS, float_format

DTYPES = ("bf16", "fp16", "fp32")
UINT = {16: np.uint16, 32: np.uint32}
SINT = {16: np.int16, 32: np.int32}


def from_bits(bits, dtype: str, shape=None) -> torch.Tensor:
    """The tensor of `dtype` whose bit patterns are `bits` (unsigned ints)."""
    fmt = FORMATS[dtype]
    a = np.asarray(bits, dtype=np.uint64).astype(UINT[fmt.bits]).view(SINT[fmt.bits])
    t = torch.from_numpy(a.copy()).view(fmt.torch_dtype)
    return t.reshape(shape) if shape is not None else t


def bits_of(t: torch.Tensor) -> np.ndarray:
    fmt = float_format(t.dtype)
    return t.reshape(-1).view(fmt.int_dtype).cpu().numpy().view(UINT[fmt.bits])


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
    np.testing.assert_array_equal(bits_of(a), bits_of(b))


def raw_header_bytes(shape) -> int:
    """magic + crc + dtype + mode + ndim + LEB128 dims: what a raw blob adds to the raw bytes."""
    return 4 + 4 + 3 + sum(max(1, -(-int(d).bit_length() // 7)) for d in shape)


def special_bits(dtype: str) -> list[int]:
    """NaN payloads (quiet, signalling, negative), +-0, +-Inf, smallest/largest subnormals, max normal."""
    if FORMATS[dtype].bits == 32:
        return [0x7FC00000, 0x7FA00001, 0xFFFFFFFF, 0x7F800001, 0x80000000, 0x00000000, 0x7F800000,
                0xFF800000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x00800000]
    if dtype == "bf16":
        return [0x7FC0, 0x7FC1, 0xFFFF, 0x7F81, 0x8000, 0x0000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x7F7F,
                0x0080]
    return [0x7E00, 0x7E01, 0xFFFF, 0x7C01, 0x8000, 0x0000, 0x7C00, 0xFC00, 0x0001, 0x83FF, 0x7BFF, 0x0400]
