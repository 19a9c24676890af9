"""What travels on the wire: `Payload`, the `Compressor` interface and packed bit fields.

`Payload.bits` is counted from the tensors that are actually sent (numel x element size),
so a packed sign vector of d entries costs 8*ceil(d/8) bits and int32 indices cost 32 bits
each. Shapes, dtypes and shared seeds are known to both ends and cost nothing.
`Payload.coded_bits` is an optional ideal (entropy-coded) size next to the raw one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Payload", "Compressor", "pack_bits", "unpack_bits", "log2_binomial", "tensor_bits"]


def tensor_bits(t: Tensor) -> int:
    """Bits a tensor occupies on the wire: numel x element size x 8."""
    return int(t.numel()) * t.element_size() * 8


@dataclass
class Payload:
    """One compressed message.

    tensors: what is sent, by name; meta: what the receiver knows without being told
    (shape, dtype, shared seed, ...); coded_bits: an ideal entropy-coded size when the
    operator states one (e.g. values + log2 C(d, k) for top-k), else None.
    """

    tensors: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    coded_bits: float | None = None

    @property
    def bits(self) -> int:
        """Exact wire bits of `tensors`."""
        return sum(tensor_bits(t) for t in self.tensors.values())


class Compressor:
    """Interface of every compression operator.

    compress(x, state) -> Payload; decompress(payload) -> tensor shaped and typed like x.
    `state` is a dict the caller keeps per tensor (and per worker) across steps; operators
    with memory (warm start, shared-seed counters) keep it there. Class attributes:
    `linear` (payloads of different workers may be summed entry-wise before decompressing,
    i.e. all-reduce compatible), `unbiased` (E[decompress(compress(x))] = x).
    """

    name: str = "compressor"
    linear: bool = False
    unbiased: bool = False

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        raise NotImplementedError

    def decompress(self, payload: Payload) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, state: dict | None = None) -> Tensor:
        """Round trip C(x) = decompress(compress(x))."""
        return self.decompress(self.compress(x, state))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


def _int_type(width: int) -> torch.dtype:
    return torch.int32 if width <= 30 else torch.int64


def _weights(width: int, device: torch.device) -> Tensor:
    """Place values 2^(width-1) ... 1 as floats: a matmul with them sums bit rows (exact below 2^24)."""
    dtype = torch.float32 if width <= 24 else torch.float64
    return torch.pow(2.0, torch.arange(width - 1, -1, -1, device=device, dtype=dtype))


def pack_bits(symbols: Tensor, width: int) -> Tensor:
    """Pack non-negative integers < 2**width into a uint8 tensor, `width` bits each, MSB first.

    Output length ceil(n * width / 8); the zero padding of the last byte is real wire cost.
    """
    if not 1 <= width <= 32:
        raise ValueError(f"pack_bits: width must be in [1, 32], got {width}")
    flat = symbols.reshape(-1)
    n = flat.numel()
    if n and flat.dtype != torch.bool:
        lo, hi = torch.aminmax(flat)
        if int(lo) < 0 or int(hi) >= (1 << width):
            raise ValueError(f"pack_bits: symbols outside [0, 2**{width})")
    nbytes = (n * width + 7) // 8
    bits = torch.zeros(nbytes * 8, dtype=torch.uint8, device=flat.device)
    if width == 1:
        bits[:n] = flat.to(torch.uint8)
    else:
        it = _int_type(width)
        shifts = torch.arange(width - 1, -1, -1, dtype=it, device=flat.device)
        bits[: n * width] = ((flat.to(it).unsqueeze(1) >> shifts) & 1).reshape(-1)
    # a float matmul with the place values sums each row of 8 bits (exact, and much faster than sum(1))
    return (bits.view(nbytes, 8).float() @ _weights(8, flat.device)).to(torch.uint8)


def unpack_bits(packed: Tensor, width: int, n: int) -> Tensor:
    """Inverse of `pack_bits`: the first `n` symbols as int64."""
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack_bits: expected uint8, got {packed.dtype}")
    if packed.numel() * 8 < n * width:
        raise ValueError(f"unpack_bits: {packed.numel()} bytes cannot hold {n} symbols of {width} bits")
    byte_shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = ((packed.unsqueeze(1) >> byte_shifts) & 1).reshape(-1)[: n * width]
    if width == 1:
        return bits.to(torch.int64)
    w = _weights(width, packed.device)
    return (bits.view(n, width).to(w.dtype) @ w).to(torch.int64)


def log2_binomial(n: int, k: int) -> float:
    """log2 C(n, k): the bits of an ideal code for a k-subset of n positions."""
    if not 0 <= k <= n:
        raise ValueError(f"log2_binomial: need 0 <= k <= n, got n={n}, k={k}")
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
