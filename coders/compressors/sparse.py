"""Sparsifiers: top-k (values + int32 indices) and random-k with a shared seed (values only).

Top-k: Stich, Cordonnier, Jaggi, "Sparsified SGD with memory", NeurIPS 2018; Aji & Heafield 2017.
Random-k: Wangni et al. 2018; with a seed shared by all workers the indices are free and
workers' value vectors can be summed (all-reduce), as in GRACE's `randomk`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from coders.compressors.payload import Compressor, Payload, log2_binomial, tensor_bits

__all__ = ["TopK", "RandomK", "num_kept", "shared_seed", "sample_without_replacement"]


def num_kept(d: int, ratio: float | None, k: int | None) -> int:
    """k from an absolute count or a fraction of d (at least 1 for d > 0)."""
    if (ratio is None) == (k is None):
        raise ValueError("give exactly one of ratio= or k=")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return min(int(k), d)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return min(d, max(1, math.ceil(ratio * d))) if d else 0


def shared_seed(seed: int, key: int, step: int) -> int:
    """A seed every worker derives identically from (seed, tensor key, step); no hash() (salted)."""
    return (int(seed) * 1_000_003 + int(key) * 10_007 + int(step) * 101 + 17) % (2**63 - 1)


def sample_without_replacement(d: int, k: int, generator: torch.Generator,
                               device: torch.device | str = "cpu") -> Tensor:
    """k distinct positions of range(d), uniformly at random (every k-subset equally likely), unsorted.

    For k >= d / 4: a random permutation's first k entries (O(d)). For smaller k, O(k log k):
    draw uniform positions with replacement and keep the first k distinct ones in order of
    appearance; by exchangeability of the i.i.d. draws that set is a uniform k-subset. About
    -d ln(1 - k/d) <= 1.16 k draws are needed, so one batch of 1.25 k + 16 almost always suffices.
    """
    if not 0 <= k <= d:
        raise ValueError(f"sample_without_replacement: need 0 <= k <= d, got d={d}, k={k}")
    if 4 * k >= d:
        return torch.randperm(d, generator=generator, device=device)[:k]
    draws = torch.empty(0, dtype=torch.int64, device=device)
    batch = k + k // 4 + 16
    while True:
        more = torch.randint(d, (batch,), generator=generator, device=device, dtype=torch.int64)
        draws = torch.cat([draws, more])
        distinct, inverse = torch.unique(draws, return_inverse=True)
        if distinct.numel() >= k:
            break
    position = torch.arange(draws.numel(), device=device)
    first = torch.full((distinct.numel(),), draws.numel(), dtype=torch.int64, device=device)
    first.scatter_reduce_(0, inverse, position, reduce="amin")
    return distinct[torch.argsort(first)[:k]]


class TopK(Compressor):
    """Keep the k entries of largest magnitude: values (input dtype) + int32 indices.

    bits = k * b_value + 32 k; coded_bits = k * b_value + log2 C(d, k) (an ideal subset code).
    """

    name = "topk"
    linear = False
    unbiased = False

    def __init__(self, ratio: float | None = 0.01, k: int | None = None):
        if k is not None:
            ratio = None
        num_kept(100, ratio, k)  # validate now
        self.ratio, self.k = ratio, k

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        flat = x.detach().reshape(-1)
        d = flat.numel()
        k = num_kept(d, self.ratio, self.k)
        if d >= 2**31:
            raise ValueError(f"TopK: {d} entries do not fit int32 indices")
        _, idx = torch.topk(flat.abs(), k, sorted=False)
        idx, _ = torch.sort(idx)
        values = flat[idx]
        meta = {"shape": x.shape, "dtype": x.dtype, "numel": d}
        coded = tensor_bits(values) + log2_binomial(d, k)
        return Payload({"values": values, "indices": idx.to(torch.int32)}, meta, coded_bits=coded)

    def decompress(self, payload: Payload) -> Tensor:
        m = payload.meta
        values = payload.tensors["values"]
        out = torch.zeros(m["numel"], dtype=values.dtype, device=values.device)
        out[payload.tensors["indices"].long()] = values
        return out.reshape(m["shape"]).to(m["dtype"])

    def entropy_symbols(self, payload: Payload) -> tuple[list[np.ndarray], int]:
        """The gaps between sorted indices are coded; the values travel raw."""
        t = payload.tensors
        idx = t["indices"].long().cpu().numpy()
        gaps = np.diff(np.concatenate([[-1], np.sort(idx)])) - 1
        return [gaps], tensor_bits(t["values"])


class RandomK(Compressor):
    """Keep k entries chosen uniformly without replacement with a seed shared by all workers.

    Only the values travel (bits = k * b_value). With `unbiased=True` the decoder scales by
    d/k so E[C(x)] = x (variance omega = d/k - 1); with False it is the contractive
    sparsifier used under error feedback. The indices of call t on tensor `state["key"]`
    come from `shared_seed(seed, key, t)`; `state["step"]` counts calls.
    """

    name = "randk"
    linear = True

    def __init__(self, ratio: float | None = 0.01, k: int | None = None, seed: int = 0,
                 unbiased: bool = True):
        if k is not None:
            ratio = None
        num_kept(100, ratio, k)
        self.ratio, self.k, self.seed = ratio, k, seed
        self.unbiased = unbiased

    def indices(self, d: int, seed: int, device: torch.device) -> Tensor:
        """The k kept positions for a given derived seed (sorted)."""
        k = num_kept(d, self.ratio, self.k)
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        return torch.sort(sample_without_replacement(d, k, g, device)).values

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        state = {} if state is None else state
        step = state.get("step", 0)
        state["step"] = step + 1
        flat = x.detach().reshape(-1)
        d = flat.numel()
        seed = shared_seed(self.seed, state.get("key", 0), step)
        idx = self.indices(d, seed, flat.device)
        # the receiver derives the same positions from the shared seed; keeping them in meta
        # (common knowledge, no wire bits) saves drawing them again when decoding here
        meta = {"shape": x.shape, "dtype": x.dtype, "numel": d, "seed": seed, "indices": idx}
        return Payload({"values": flat[idx].clone()}, meta)

    def decompress(self, payload: Payload) -> Tensor:
        m = payload.meta
        values = payload.tensors["values"]
        idx = m.get("indices")
        if idx is None or idx.device != values.device:
            idx = self.indices(m["numel"], m["seed"], values.device)
        out = torch.zeros(m["numel"], dtype=values.dtype, device=values.device)
        scale = m["numel"] / idx.numel() if self.unbiased else 1.0
        out[idx] = values * scale
        return out.reshape(m["shape"]).to(m["dtype"])
