"""Decentralized SGD with (compressed) gossip: D-PSGD, PowerGossip, Choco-SGD, DeepSqueeze.

One file per method (`dpsgd.py`, `powergossip.py`, `choco.py`, `deepsqueeze.py`) over the shared
`base.py`; each registers itself in `coders.algorithms.registry` (GOSSIP_METHODS is its
decentralized part).

One worker's view, written against `Comm.exchange` (point-to-point with the topology's
neighbours). Every method is the D-PSGD wrapper of Lian et al. 2017 in the order of
epfml/powergossip (`DPSGD(overlapping=True)`):

    x_{t+1} = gossip(x_t) - lr * update(g(x_t)),

i.e. `step(lr)` reads `p.grad` (computed on x_t), runs the gossip on x_t in place, then applies
the local optimizer (Nesterov SGD, momentum 0.9 by default, `torch.optim.SGD`) to the gossiped
parameters. The methods differ only in `gossip`:

- `DPSGD`: exact gossip x_i += gamma sum_j w_ij (x_j - x_i) (gamma = 1: x <- W x).
- `PowerGossip` (Vogels, Karimireddy, Jaggi, NeurIPS 2020): per edge (i, j) and matrix X the two
  ends keep identical factors P_ij (m x r), Q_ij (n x r), seeded from the pair. Iteration t
  (global counter, t = 0 skipped): odd t: u = orth(Q), send X_i u; even t: u = orth(P), send
  X_i^T u. Both ends form D = v_hi - v_lo (hi/lo = larger/smaller rank), bit-identical, store
  it in P (odd) / Q (even), and apply X_i += sign * gamma * w_ij * P Q^T with sign = +1 on the
  lower rank and -1 on the higher, so sum_i X_i is preserved. 1-D parameters get exact gossip
  with gamma = 1.
- `ChocoSGD` (Koloskova, Stich, Jaggi, ICML 2019): x_hat_i, s_i = sum_j w_ij x_hat_j (both 0);
  q = C(x_i - x_hat_i), send q; x_hat_i += q; s_i += sum_{j in N(i) + i} w_ij q_j;
  x_i += gamma (s_i - x_hat_i).
- `DeepSqueeze` (Tang et al. 2019): v = x + delta; send C(v); delta = v - C(v);
  x_i += gamma sum_{j != i} w_ij (C(v_j) - C(v_i)).

Bits: `StepStats.bits_up` = bits this worker sends per step (all neighbours), `bits_down` =
bits it receives, `bits_wire` = bits_up; `extra["bits_per_neighbour"]` = bits sent to each
neighbour this step (the per-edge message size).

Defaults for the consensus steps gamma come from epfml/powergossip's tuned CIFAR-10 runs
(`experiments/resnet20_cifar10_shuffled.py`): Choco sign 0.45, Choco top-1% 0.0375,
DeepSqueeze sign 0.01; Choco random-1% 0.01 and Choco rank-1 0.03 (no reference value) come
from a sweep on digits (benchmarks/RESULTS.md). PowerGossip and D-PSGD use the topology's
optimal over-relaxed step 2 / (mu_2 + mu_max) (1.308 on the 8-ring, the reference's setting;
computed from W, no tuning). All are configurable with `gamma=` (a number or "optimal").
"""

import importlib
import pkgutil

from coders.algorithms.gossip.base import (
    CompressedGossip,
    GossipAlgorithm,
    consensus,
    consensus_distance,
    pair_seed,
)
from coders.algorithms.gossip.choco import ChocoLowRank, ChocoRandK, ChocoSGD, ChocoSign, ChocoTopK
from coders.algorithms.gossip.deepsqueeze import DeepSqueeze
from coders.algorithms.gossip.dpsgd import DPSGD
from coders.algorithms.gossip.powergossip import PowerGossip
from coders.algorithms.registry import GOSSIP_METHODS

for _info in pkgutil.iter_modules(__path__):  # a new gossip method registers by being a file here
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "GossipAlgorithm",
    "CompressedGossip",
    "DPSGD",
    "PowerGossip",
    "ChocoSGD",
    "ChocoTopK",
    "ChocoRandK",
    "ChocoSign",
    "ChocoLowRank",
    "DeepSqueeze",
    "GOSSIP_METHODS",
    "consensus",
    "consensus_distance",
    "pair_seed",
]
