"""Dense operators: identity (fp32) and fp16 / bf16 casts; all linear (all-reduce compatible)."""

from __future__ import annotations

import torch
from torch import Tensor

from coders.compressors.payload import Compressor, Payload

__all__ = ["Identity", "Cast"]


class Identity(Compressor):
    """No compression: the tensor travels as is (32 bits per fp32 entry)."""

    name = "identity"
    linear = True
    unbiased = True

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        return Payload({"values": x.detach().clone()}, {"shape": x.shape, "dtype": x.dtype})

    def decompress(self, payload: Payload) -> Tensor:
        return payload.tensors["values"].clone()


_CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class Cast(Compressor):
    """Round to a low-precision float type (fp16: 16 bits, 10-bit mantissa; bf16: 16 bits, 7-bit).

    Biased only by rounding; to all-reduce, divide by W before the cast so the sum cannot
    overflow fp16 (as `torch ... fp16_compress_hook`).
    """

    linear = True
    unbiased = False

    def __init__(self, dtype: str | torch.dtype = "bf16"):
        if isinstance(dtype, str):
            if dtype not in _CAST_DTYPES:
                raise ValueError(f"Cast: dtype must be one of {sorted(_CAST_DTYPES)}, got {dtype!r}")
            dtype = _CAST_DTYPES[dtype]
        if dtype not in _CAST_DTYPES.values():
            raise ValueError(f"Cast: unsupported dtype {dtype}")
        self.dtype = dtype
        self.name = {v: k for k, v in _CAST_DTYPES.items()}[dtype]

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        return Payload({"values": x.detach().to(self.dtype, copy=True)}, {"shape": x.shape, "dtype": x.dtype})

    def decompress(self, payload: Payload) -> Tensor:
        return payload.tensors["values"].to(payload.meta["dtype"])
