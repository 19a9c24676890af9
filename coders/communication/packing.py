"""Tensor packing: many tensors as one flat vector or one byte buffer, and back.

A collective moves one tensor; an algorithm holds one per layer. `flatten` / `unflatten`
concatenate same-dtype tensors (model order) for one all-reduce; `pack_bytes` / `unpack_bytes`
view tensors of any dtypes as bytes and concatenate them into the uint8 buffer that travels
(the receiver knows the shapes and dtypes: they are common knowledge, as in `Payload.meta`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["flatten", "unflatten", "pack_bytes", "unpack_bytes", "layout_of"]


def flatten(tensors: list[Tensor]) -> Tensor:
    """One contiguous vector of all tensors (model order)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Split a flat vector back into views shaped like `like` (inverse of `flatten`)."""
    out, offset = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[offset : offset + n].view(t.shape))
        offset += n
    return out


def pack_bytes(tensors: list[Tensor], device: torch.device | None = None) -> Tensor:
    """All tensors viewed as bytes and concatenated into one uint8 buffer (what travels).

    An empty list gives an empty buffer on `device` (CPU by default).
    """
    parts = [t.detach().contiguous().reshape(-1).view(torch.uint8) for t in tensors]
    if not parts:
        return torch.zeros(0, dtype=torch.uint8, device=device or torch.device("cpu"))
    return torch.cat(parts)


def unpack_bytes(buf: Tensor, layout: list[tuple[torch.Size, torch.dtype]]) -> list[Tensor]:
    """Inverse of `pack_bytes` given each tensor's (shape, dtype), in order.

    Raises ValueError when `buf` does not hold exactly that many bytes.
    """
    sizes = [int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()
             for shape, dtype in layout]
    if buf.numel() != sum(sizes):
        raise ValueError(f"unpack_bytes: buffer has {buf.numel()} bytes, the layout needs {sum(sizes)}")
    out, offset = [], 0
    for (shape, dtype), nbytes in zip(layout, sizes, strict=True):
        # clone: a byte slice at an unaligned offset cannot be viewed as a wider dtype
        out.append(buf[offset : offset + nbytes].clone().view(dtype).reshape(shape))
        offset += nbytes
    return out


def layout_of(tensors: list[Tensor]) -> list[tuple[torch.Size, torch.dtype]]:
    """(shape, dtype) of each tensor: what `unpack_bytes` needs."""
    return [(t.shape, t.dtype) for t in tensors]
