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

import numpy as np
import torch
from torch import Tensor

__all__ = ["Payload", "Compressor", "pack_bits", "unpack_bits", "unpack_rows", "log2_binomial", "tensor_bits"]


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

    def entropy_symbols(self, payload: Payload) -> tuple[list[np.ndarray], int] | None:
        """How the payload is entropy-coded: (discrete symbol streams, raw bits of the rest), or None.

        None: nothing discrete to code (casts, random-k values, low-rank factors), the payload
        counts at its raw size (`coders.compressors.coded`).
        """
        return None

    def __call__(self, x: Tensor, state: dict | None = None) -> Tensor:
        """Round trip C(x) = decompress(compress(x))."""
        return self.decompress(self.compress(x, state))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


def _group(width: int) -> int:
    """Symbols per whole-byte group: g * width is a multiple of 8 (g = 8 / gcd(width, 8))."""
    return 8 // math.gcd(width, 8)


def pack_bits(symbols: Tensor, width: int) -> Tensor:
    """Pack non-negative integers < 2**width into a uint8 tensor, `width` bits each, MSB first.

    Output length ceil(n * width / 8); the zero padding of the last byte is real wire cost.
    Groups of g symbols fill g * width / 8 whole bytes; when a group fits 53 bits it is
    assembled by one exact float64 matmul (fast), else bit by bit.
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
    dev = flat.device
    g = _group(width)
    if g * width <= 48:
        groups = -(-n // g)
        padded = torch.zeros(groups * g, dtype=torch.float64, device=dev)
        padded[:n] = flat.to(torch.float64)
        combined = (padded.view(groups, g) @ _weights_of(width, g, dev)).to(torch.int64)
        k = g * width // 8
        byte_shifts = torch.arange(8 * (k - 1), -1, -8, dtype=torch.int64, device=dev)
        return ((combined.unsqueeze(1) >> byte_shifts) & 255).to(torch.uint8).reshape(-1)[:nbytes]
    bits = torch.zeros(nbytes * 8, dtype=torch.uint8, device=dev)
    shifts = torch.arange(width - 1, -1, -1, dtype=torch.int64, device=dev)
    bits[: n * width] = ((flat.to(torch.int64).unsqueeze(1) >> shifts) & 1).reshape(-1)
    return (bits.view(nbytes, 8).float() @ _weights_of(1, 8, dev).float()).to(torch.uint8)


def unpack_bits(packed: Tensor, width: int, n: int) -> Tensor:
    """Inverse of `pack_bits`: the first `n` symbols as int64."""
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack_bits: expected uint8, got {packed.dtype}")
    if packed.numel() * 8 < n * width:
        raise ValueError(f"unpack_bits: {packed.numel()} bytes cannot hold {n} symbols of {width} bits")
    dev = packed.device
    g = _group(width)
    if g * width <= 48:
        k = g * width // 8
        groups = -(-n // g)
        buf = torch.zeros(groups * k, dtype=torch.float64, device=dev)
        m = min(packed.numel(), groups * k)
        buf[:m] = packed[:m].to(torch.float64)
        combined = (buf.view(groups, k) @ _weights_of(8, k, dev)).to(torch.int64)
        sym_shifts = torch.arange(width * (g - 1), -1, -width, dtype=torch.int64, device=dev)
        return ((combined.unsqueeze(1) >> sym_shifts) & ((1 << width) - 1)).reshape(-1)[:n]
    byte_shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=dev)
    bits = ((packed.unsqueeze(1) >> byte_shifts) & 1).reshape(-1)[: n * width]
    return (bits.view(n, width).to(torch.float64) @ _weights_of(1, width, dev)).to(torch.int64)


def unpack_rows(packed: Tensor, width: int, n: int) -> Tensor:
    """`unpack_bits` of every row of a (R, bytes) stack of equal-length packings: (R, n) int64.

    One batched decode for the messages of R workers (each row packed by `pack_bits` from n
    symbols): rows are zero-padded to whole byte groups so symbols stay aligned.
    """
    if packed.dim() != 2:
        raise ValueError(f"unpack_rows: expected a 2-D (rows, bytes) tensor, got shape {tuple(packed.shape)}")
    rows, nbytes = packed.shape
    if nbytes * 8 < n * width:
        raise ValueError(f"unpack_rows: {nbytes} bytes per row cannot hold {n} symbols of {width} bits")
    g = _group(width)
    if g * width > 48 or rows == 0:
        return torch.stack([unpack_bits(r, width, n) for r in packed]) if rows else \
            torch.zeros(0, n, dtype=torch.int64, device=packed.device)
    groups = -(-n // g)
    k = g * width // 8
    if nbytes != groups * k:
        padded = torch.zeros(rows, groups * k, dtype=torch.uint8, device=packed.device)
        m = min(nbytes, groups * k)
        padded[:, :m] = packed[:, :m]
        packed = padded
    return unpack_bits(packed.reshape(-1), width, rows * groups * g).view(rows, groups * g)[:, :n]


def _weights_of(width: int, count: int, device: torch.device) -> Tensor:
    """Place values 2^(width (count-1)), ..., 2^width, 1 (float64: exact up to 2^53)."""
    return torch.pow(2.0, width * torch.arange(count - 1, -1, -1, device=device, dtype=torch.float64))


def log2_binomial(n: int, k: int) -> float:
    """log2 C(n, k): the bits of an ideal code for a k-subset of n positions."""
    if not 0 <= k <= n:
        raise ValueError(f"log2_binomial: need 0 <= k <= n, got n={n}, k={k}")
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
