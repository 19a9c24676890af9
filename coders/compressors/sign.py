"""Sign compressors: 1-bit sign (signSGD) and scaled sign ||x||_1 / d * sign(x).

signSGD: Bernstein et al., ICML 2018 / ICLR 2019. Scaled sign (EF-signSGD's compressor):
Karimireddy et al., "Error Feedback Fixes SignSGD", ICML 2019.
One bit per entry, packed 8 per uint8 byte; bit 1 means x >= 0 (so sign(0) decodes to +1:
one bit cannot carry a zero; methods needing ternary values use `ternary_pack`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from coders.compressors.payload import Compressor, Payload, pack_bits, tensor_bits, unpack_bits

__all__ = ["Sign", "ScaledSign", "pack_signs", "unpack_signs", "ternary_pack", "ternary_unpack",
           "TERNARY_WIDTH", "ternary_ideal_bits"]

TERNARY_WIDTH = 2  # {-1, 0, +1} packed in 2 bits (log2 3 = 1.585 is the ideal, see coded_bits)


def pack_signs(x: Tensor) -> Tensor:
    """Pack sign bits (1 for x >= 0) into uint8, ceil(d/8) bytes."""
    return pack_bits((x.reshape(-1) >= 0).to(torch.int64), 1)


def unpack_signs(packed: Tensor, n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Decode `pack_signs` to +1 / -1 values of `dtype`."""
    return (unpack_bits(packed, 1, n) * 2 - 1).to(dtype)


def ternary_pack(v: Tensor) -> Tensor:
    """Pack values in {-1, 0, +1} at 2 bits each."""
    return pack_bits(v.reshape(-1).to(torch.int64) + 1, TERNARY_WIDTH)


def ternary_unpack(packed: Tensor, n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Inverse of `ternary_pack`."""
    return (unpack_bits(packed, TERNARY_WIDTH, n) - 1).to(dtype)


class Sign(Compressor):
    """sign(x) in 1 packed bit per entry: bits = 8 ceil(d / 8)."""

    name = "sign"

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        return Payload({"signs": pack_signs(x.detach())},
                       {"shape": x.shape, "dtype": x.dtype, "numel": x.numel()})

    def decompress(self, payload: Payload) -> Tensor:
        m = payload.meta
        return unpack_signs(payload.tensors["signs"], m["numel"], m["dtype"]).reshape(m["shape"])

    def entropy_symbols(self, payload: Payload) -> tuple[list[np.ndarray], int]:
        return _sign_symbols(payload)


def _sign_symbols(payload: Payload) -> tuple[list[np.ndarray], int]:
    """The sign bits are coded; a scale, when present, travels raw."""
    t = payload.tensors
    signs = unpack_bits(t["signs"], 1, payload.meta["numel"])
    return [signs.cpu().numpy()], tensor_bits(t["scale"]) if "scale" in t else 0


class ScaledSign(Compressor):
    """(||x||_1 / d) sign(x): packed signs + one fp32 scale; bits = 8 ceil(d / 8) + 32.

    The same operator as epfml's `SignAndNorm` (Choco-SGD) and EF-signSGD's compressor.
    """

    name = "scaled_sign"

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        x = x.detach()
        d = x.numel()
        scale = (x.abs().sum() / max(d, 1)).float().reshape(1)
        return Payload({"signs": pack_signs(x), "scale": scale},
                       {"shape": x.shape, "dtype": x.dtype, "numel": d})

    def decompress(self, payload: Payload) -> Tensor:
        m = payload.meta
        signs = unpack_signs(payload.tensors["signs"], m["numel"], torch.float32)
        return (signs * payload.tensors["scale"]).reshape(m["shape"]).to(m["dtype"])

    def entropy_symbols(self, payload: Payload) -> tuple[list[np.ndarray], int]:
        return _sign_symbols(payload)


def ternary_ideal_bits(n: int) -> float:
    """n log2 3: the ideal size of n independent ternary symbols."""
    return n * math.log2(3)
