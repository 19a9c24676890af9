"""DeepSqueeze (Tang et al. 2019): decentralized SGD with error-compensated compressed models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from coders.algorithms.gossip.base import CompressedGossip
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.topology import Topology


@register
class DeepSqueeze(CompressedGossip):
    """DeepSqueeze (Tang et al. 2019) with error-compensated compressed models, sign-and-norm by default.

    v = x + delta; delta = v - C(v); x_i += gamma sum_{j != i} w_ij (C(v_j) - C(v_i)); gamma 0.01
    as tuned in epfml/powergossip.
    """

    name = "deepsqueeze"
    default_compressor = "scaled_sign"
    default_gamma = 0.01

    def __init__(self, params: Iterable[Tensor], comm: Comm, topology: Topology | None = None,
                 **options: Any) -> None:
        super().__init__(params, comm, topology, **options)
        self.delta = [torch.zeros_like(p) for p in self.params]

    def gossip(self) -> dict[str, Any]:
        vs = [x + d for x, d in zip(self.params, self.delta, strict=True)]
        own, theirs, info = self._send_compressed(vs)
        for k, (x, d, v) in enumerate(zip(self.params, self.delta, vs, strict=True)):
            d.copy_(v - own[k])
            mix = torch.zeros_like(x)
            for j in self.neighbours:
                mix.add_(theirs[j][k] - own[k], alpha=self.weights[j])
            x.add_(mix, alpha=self.gamma)
        return info
