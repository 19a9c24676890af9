"""S3GD-MV: sparse sign SGD with majority vote.

Park and Lee, "Sparse-SignSGD with Majority Vote for Communication-Efficient Distributed Learning"
(arXiv 2302.07475, ISIT 2023; official code chanho26/SignSGD_Codec, Algorithms/train_S3GD.py; their
"SignSGD with Federated Voting" is a different method):
    worker m, per layer of N entries:  a <- beta a + g          (beta = accum_weight, default 1)
        S = top-K of |a|, K = ceil(sparsity N);  send sign(a_S) and S;  a[S] <- 0
    server: v = sign(sum_m s_m) in {-1, 0, +1}  (0 where nobody voted, or a tie)
    all:    x <- x - lr v   (SGD, momentum 0 by default)
With sparsity = 1 and beta = 0 this is exactly signSGD-MV (`SignSGDMV`), a tested invariant.
Deliberate differences from the official code: a selected entry with a_i = 0 votes +1 (one sign
bit cannot carry a zero; the official torch.sign votes 0). It only happens when a layer has
fewer than K non-zero accumulated entries. The `--spar_method rand` variant is not provided.

Wire, per layer: up = the support S as K int32 indices, or as an N-bit packed bitmap when that
is smaller (K > N / 32), + K packed sign bits in index order (ideal: K + log2 C(N, K));
down = the cheapest of (nnz(v) int32 indices | an N-bit bitmap) + nnz packed sign bits, and a
dense ternary vector (2 packed bits per entry); ideal: min(nnz + log2 C(N, nnz), N log2 3). The server rule
runs identically on every rank after an all-gather; bits are counted as PS traffic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from coders.algorithms.base import Algorithm, StepStats, Timer, gather_payloads
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.compressors.payload import Payload, log2_binomial, pack_bits, unpack_rows
from coders.compressors.sign import pack_signs
from coders.compressors.sparse import num_kept
from coders.wire import INT32_BITS

__all__ = ["S3GDMV", "sparse_vote_downlink_bits"]


def sparse_vote_downlink_bits(n: int, nnz: int) -> tuple[int, float]:
    """(raw, ideal) bits of a ternary vote with nnz non-zeros over n entries (cheaper of two codes)."""
    signs = 8 * math.ceil(nnz / 8)
    sparse = min(INT32_BITS * nnz, 8 * math.ceil(n / 8)) + signs
    dense = 8 * math.ceil(2 * n / 8)
    ideal = min(nnz + log2_binomial(n, nnz), n * math.log2(3))
    return min(sparse, dense), ideal


@register
class S3GDMV(Algorithm):
    """Sparse sign-SGD with majority vote over the union of supports and residual accumulation."""

    name = "s3gd-mv"
    pattern = "ps"
    allreduce_compatible = False
    can_overlap = True  # a vote of per-layer sparse sign messages, like Signum-MV
    optimizer_at = "replicas"
    needs_topology = False
    default_lr = 3e-3  # tuned on digits-cnn (sign steps); pass lr= for other workloads

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, sparsity: float = 0.1,
                 accum_weight: float = 1.0, **options):
        super().__init__(params, comm, **options)
        if not 0 < sparsity <= 1:
            raise ValueError(f"{self.name}: sparsity must be in (0, 1], got {sparsity}")
        if accum_weight < 0:
            raise ValueError(f"{self.name}: accum_weight must be >= 0, got {accum_weight}")
        self.sparsity, self.beta = float(sparsity), float(accum_weight)
        self.acc = [torch.zeros_like(p, dtype=torch.float32).reshape(-1) for p in self.params]
        self.ks = [num_kept(p.numel(), self.sparsity, None) for p in self.params]

    @staticmethod
    def _encode(a: Tensor, idx: Tensor, k: int) -> Payload:
        """Support (int32 indices, or a packed bitmap when 32 K > N) + packed signs in index order."""
        n = a.numel()
        meta = {"numel": n, "k": k}
        if INT32_BITS * k > n:
            mask = torch.zeros(n, dtype=torch.bool, device=a.device)
            mask[idx] = True
            return Payload({"bitmap": pack_bits(mask, 1), "signs": pack_signs(a[idx])}, meta)
        return Payload({"indices": idx.to(torch.int32), "signs": pack_signs(a[idx])}, meta)

    @staticmethod
    def _decode_all(pls: list[Payload]) -> tuple[Tensor, Tensor]:
        """(indices, +-1 signs) of all workers' messages of one layer, concatenated in rank order.

        One batched unpack for the W messages (they share n, k and the support encoding).
        """
        n, k = pls[0].meta["numel"], pls[0].meta["k"]
        signs = unpack_rows(torch.stack([pl.tensors["signs"] for pl in pls]), 1, k).reshape(-1)
        signs = (signs * 2 - 1).to(torch.float32)
        if "bitmap" in pls[0].tensors:
            masks = unpack_rows(torch.stack([pl.tensors["bitmap"] for pl in pls]), 1, n)
            idx = torch.nonzero(masks)[:, 1]  # row-major: rank order, increasing index (= sign order)
        else:
            idx = torch.cat([pl.tensors["indices"] for pl in pls]).long()
        return idx, signs

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        comp, dec = Timer(self.device), Timer(self.device)
        payloads = []
        up_ideal = 0.0
        with torch.no_grad():
            with comp:
                for a, g, k in zip(self.acc, self.grads(), self.ks, strict=True):
                    a.mul_(self.beta).add_(g.reshape(-1).float())
                    idx = torch.sort(torch.topk(a.abs(), k, sorted=False).indices).values
                    payloads.append(self._encode(a, idx, k))
                    a[idx] = 0.0
                    up_ideal += k + log2_binomial(a.numel(), k)
            gathered = gather_payloads(self.comm, payloads)
            with dec:
                votes, down, down_ideal = [], 0, 0.0
                for layer, p in enumerate(self.params):
                    total = torch.zeros(p.numel(), dtype=torch.float32, device=p.device)
                    # all workers at once: the sum of +-1 is exact in any order
                    total.index_add_(0, *self._decode_all([rp[layer] for rp in gathered]))
                    v = torch.sign(total)
                    raw, ideal = sparse_vote_downlink_bits(p.numel(), int(torch.count_nonzero(v)))
                    down += raw
                    down_ideal += ideal
                    votes.append(v)
            self.apply_update(votes, lr)
        up = sum(pl.bits for pl in payloads)
        return StepStats(float(up), float(down), float(up + down), comp.seconds, dec.seconds,
                         {"bits_up_ideal": up_ideal, "bits_down_ideal": down_ideal})
