"""D-PSGD (Lian et al. 2017): exact gossip, the uncompressed decentralized reference."""

from __future__ import annotations

from typing import Any

from coders.algorithms.gossip.base import GossipAlgorithm
from coders.algorithms.registry import register


@register
class DPSGD(GossipAlgorithm):
    """D-PSGD (Lian et al. 2017): exact gossip x <- x + gamma (W - I) x, the uncompressed reference.

    gamma defaults to the optimal over-relaxed step of the topology (1.308 on the 8-ring, as the
    reference's CIFAR-10 experiments); gamma = 1 is plain x <- W x.
    """

    name = "dpsgd"
    default_gamma = "optimal"

    def gossip(self) -> dict[str, Any]:
        per = self._exact_gossip(self.params, self.gamma)
        return {"bits": {j: per for j in self.neighbours}}
