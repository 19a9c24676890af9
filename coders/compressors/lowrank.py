"""Rank-r approximation by one step of subspace (power) iteration with warm start: PowerSGD's operator.

Vogels, Karimireddy, Jaggi, "PowerSGD: Practical Low-Rank Gradient Compression for
Distributed Optimization", NeurIPS 2019, Algorithm 1 (here for one worker, no all-reduce):
a tensor is viewed as M = x.view(shape[0], -1) (m x n), r = min(rank, m, n),
    P = M Q;  P_hat = orth(P);  Q = M^T P_hat;  send (P_hat, Q);  decode P_hat Q^T,
with Q kept in `state["q"]` for the next call (warm start) and first drawn from N(0, 1)
with a seed shared by all workers. Wire: 32 r (m + n) bits for fp32 factors. Tensors with
fewer than 2 dimensions, or where r (m + n) >= m n, travel dense. (The paper code compresses
every >= 2-D tensor; PyTorch's hook compresses only if r (m + n) min_compression_rate < m n,
rate 2 by default. Here the rate is 1: dense exactly when the factors would not be smaller.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from coders.compressors.payload import Compressor, Payload
from coders.compressors.sparse import shared_seed

__all__ = ["LowRank", "orthogonalize", "matrix_view", "initial_q", "power_step"]


def orthogonalize(p: Tensor, eps: float = 1e-8) -> Tensor:
    """Gram-Schmidt on the columns of p (m x r), returning a new matrix with orthonormal columns.

    eps guards against a zero column (as epfml/powergossip: col / (||col|| + eps)).
    """
    q = p.clone()
    for i in range(q.shape[1]):
        col = q[:, i : i + 1]
        col /= torch.linalg.vector_norm(col) + eps
        if i + 1 < q.shape[1]:
            rest = q[:, i + 1 :]
            rest -= col * (col.T @ rest)
    return q


def matrix_view(x: Tensor) -> Tensor | None:
    """x.view(shape[0], -1) for tensors of >= 2 dims, else None."""
    if x.dim() < 2:
        return None
    return x.reshape(x.shape[0], -1)


def initial_q(n: int, r: int, seed: int, key: int, device: torch.device, dtype: torch.dtype,
              step: int = 0) -> Tensor:
    """A fresh Q (n x r), N(0, 1) from a seed shared by every worker (same on all for same key/step)."""
    g = torch.Generator(device=device)
    g.manual_seed(shared_seed(seed, key, step))
    return torch.randn(n, r, generator=g, device=device, dtype=dtype)


def power_step(mats: list[Tensor], qs: list[Tensor], eps: float = 1e-8,
               all_reduce: Callable[[list[Tensor]], list[Tensor]] | None = None,
               world_size: int = 1) -> tuple[list[Tensor], list[Tensor]]:
    """One PowerSGD power step on matrices M_k (m x n) with queries Q_k (n x r); returns (P_hat, Q).

    Vogels et al. 2019, Algorithm 1:
        P = sum_i M_i Q;  P_hat = orth(P);  Q = (1/W) sum_i M_i^T P_hat,
    where `all_reduce` sums a list of tensors over the W workers (one collective for the
    list; None: one worker, no communication and no division). The same step serves the
    algorithm (`PowerSGD`), the DDP hook (`powersgd_hook`) and the one-tensor operator (`LowRank`).
    """
    ps = [m @ q for m, q in zip(mats, qs, strict=True)]
    if all_reduce is not None:
        ps = all_reduce(ps)
    p_hat = [orthogonalize(p, eps) for p in ps]
    q_new = [m.T @ p for m, p in zip(mats, p_hat, strict=True)]
    if all_reduce is not None:
        q_new = [q / world_size for q in all_reduce(q_new)]
    return p_hat, q_new


class LowRank(Compressor):
    """Rank-r PowerSGD step on one tensor with warm start; dense when compression would not pay."""

    name = "lowrank"
    linear = False
    unbiased = False

    def __init__(self, rank: int = 1, warm_start: bool = True, seed: int = 0, eps: float = 1e-8):
        if rank < 1:
            raise ValueError(f"LowRank: rank must be >= 1, got {rank}")
        self.rank, self.warm_start, self.seed, self.eps = rank, warm_start, seed, eps

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        state = {} if state is None else state
        x = x.detach()
        meta = {"shape": x.shape, "dtype": x.dtype}
        mat = matrix_view(x)
        if mat is None or min(mat.shape) == 0:
            return Payload({"dense": x.clone()}, meta)
        m, n = mat.shape
        r = min(self.rank, m, n)
        if r * (m + n) >= m * n:
            return Payload({"dense": x.clone()}, meta)
        mat = mat.float()
        q = state.get("q") if self.warm_start else None
        step = state.get("step", 0)
        state["step"] = step + 1
        if q is None or q.shape != (n, r):
            q = initial_q(n, r, self.seed, state.get("key", 0), mat.device, mat.dtype,
                          step=0 if self.warm_start else step)
        (p,), (q,) = power_step([mat], [q], self.eps)
        state["q"] = q
        return Payload({"p": p, "q": q.clone()}, meta)

    def decompress(self, payload: Payload) -> Tensor:
        m = payload.meta
        t = payload.tensors
        if "dense" in t:
            return t["dense"].clone()
        return (t["p"] @ t["q"].T).reshape(m["shape"]).to(m["dtype"])
