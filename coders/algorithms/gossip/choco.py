"""Choco-SGD (Koloskova, Stich, Jaggi, ICML 2019) with top-k, random-k, sign and low-rank operators."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from coders.algorithms.gossip.base import CompressedGossip
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.topology import Topology


class ChocoSGD(CompressedGossip):
    """Choco-SGD (Koloskova, Stich, Jaggi, ICML 2019) with a compression operator C.

    State x_hat_i and s_i = sum_{j in N(i) + i} w_ij x_hat_j, both starting at 0 (epfml/powergossip
    `ChocoGossip`): q = C(x - x_hat); x_hat += q; s += sum w_ij q_j; x += gamma (s - x_hat).
    The generic class takes `compressor=`; the named variants pick the operator and gamma.
    """

    name = "choco"
    default_compressor = "topk"
    default_gamma = 0.0375

    def __init__(self, params: Iterable[Tensor], comm: Comm, topology: Topology | None = None,
                 **options: Any) -> None:
        super().__init__(params, comm, topology, **options)
        self.x_hat = [torch.zeros_like(p) for p in self.params]
        self.s = [torch.zeros_like(p) for p in self.params]

    def gossip(self) -> dict[str, Any]:
        diffs = [x - h for x, h in zip(self.params, self.x_hat, strict=True)]
        own, theirs, info = self._send_compressed(diffs)
        for k, (x, h, s) in enumerate(zip(self.params, self.x_hat, self.s, strict=True)):
            h.add_(own[k])
            s.add_(own[k], alpha=self.self_weight)
            for j in self.neighbours:
                s.add_(theirs[j][k], alpha=self.weights[j])
            x.add_(s - h, alpha=self.gamma)
        return info


@register
class ChocoTopK(ChocoSGD):
    """Choco-SGD with top-k (default 1% per tensor, gamma 0.0375 as tuned in epfml/powergossip).

    The indices travel as int32 (`coders.compressors.TopK`, as GRACE and the PowerSGD paper code);
    epfml/powergossip's `TopK` sends int64, so its messages are 32 k bits larger than ours. k is
    ceil(ratio d) here and floor (at least 1) there: at most one entry apart.
    """

    name = "choco-topk"
    default_compressor = "topk"
    default_gamma = 0.0375


@register
class ChocoRandK(ChocoSGD):
    """Choco-SGD with shared-seed random-k (1% per tensor, values only; contractive, not rescaled).

    Deliberate difference: epfml/powergossip's `RandomK` draws positions independently on each
    worker and sends them (int64) with the values; here every worker draws the same positions
    from the shared seed, so only the 32 k value bits travel (Choco needs no particular positions).

    No tuned value in the reference; gamma 0.01 from a sweep on digits-cnn, ring of 8
    (0.0375 let the consensus distance grow, 0.1 diverged; benchmarks/RESULTS.md).
    """

    name = "choco-randk"
    default_compressor = "randk"
    default_gamma = 0.01


@register
class ChocoSign(ChocoSGD):
    """Choco-SGD with sign-and-norm, (||x||_1 / d) sign(x) (gamma 0.45 as tuned in epfml/powergossip)."""

    name = "choco-sign"
    default_compressor = "scaled_sign"
    default_gamma = 0.45


@register
class ChocoLowRank(ChocoSGD):
    """Choco-SGD with a rank-r operator (rank 1 default; one warm-started power step, PowerSGD's).

    The reference's `SVD` baseline has no tuned value; gamma 0.03 from a sweep on digits-cnn,
    ring of 8 (0.1 and above diverged; benchmarks/RESULTS.md).
    """

    name = "choco-lowrank"
    default_compressor = "lowrank"
    default_gamma = 0.03
