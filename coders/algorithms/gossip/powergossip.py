"""PowerGossip (Vogels, Karimireddy, Jaggi, NeurIPS 2020): low-rank power steps on model differences."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from coders.algorithms.gossip.base import GossipAlgorithm, pair_seed
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.packing import flatten, unflatten
from coders.communication.topology import Topology
from coders.compressors import orthogonalize
from coders.compressors.payload import tensor_bits


@register
class PowerGossip(GossipAlgorithm):
    """PowerGossip (Vogels, Karimireddy, Jaggi, NeurIPS 2020): low-rank power steps on model differences.

    Options:
    - `rank` (1) and `num_iterations` (1: power steps, hence messages, per SGD step);
    - `warm_start` (True: u is the previous iteration's factor; False: redrawn from the edge's
      RNG at every iteration);
    - `gamma` ("optimal": the topology's over-relaxed step 2 / (mu_2 + mu_max), 1.308 on the
      8-ring as in the reference's experiments, computed, not tuned); it scales the matrix
      updates, 1-D parameters always use 1;
    - `eps` (1e-8): Gram-Schmidt guard col / (||col|| + eps), as the reference.
    A parameter with ndim >= 2 is the matrix X.view(shape[0], -1) (m x n), r = min(rank, m, n).
    Per neighbour and iteration it sends r*m (odd t) or r*n (even t) values per matrix.
    `compress_s` times forming the messages, `decompress_s` rebuilding and applying P Q^T.
    """

    name = "powergossip"
    default_gamma = "optimal"

    def __init__(
        self,
        params: Iterable[Tensor],
        comm: Comm,
        topology: Topology | None = None,
        *,
        rank: int = 1,
        num_iterations: int = 1,
        warm_start: bool = True,
        eps: float = 1e-8,
        **options: Any,
    ) -> None:
        super().__init__(params, comm, topology, **options)
        if not eps >= 0:
            raise ValueError(f"powergossip: eps must be >= 0, got {eps}")
        self.eps = float(eps)
        if int(rank) != rank or rank < 1:
            raise ValueError(f"powergossip: rank must be a positive integer, got {rank}")
        if int(num_iterations) != num_iterations or num_iterations < 1:
            raise ValueError(f"powergossip: num_iterations must be a positive integer, got {num_iterations}")
        self.rank_r = int(rank)
        self.num_iterations = int(num_iterations)
        self.warm_start = bool(warm_start)
        self.matrices = [p for p in self.params if p.ndim >= 2]
        self.vectors = [p for p in self.params if p.ndim < 2]
        self.shapes = [(p.shape[0], p.numel() // p.shape[0]) for p in self.matrices]
        self.iteration = 0
        # Per neighbour: a CPU generator shared with that neighbour, and the P / Q factor lists.
        self.generators: dict[int, torch.Generator] = {}
        self.P: dict[int, list[Tensor]] = {}
        self.Q: dict[int, list[Tensor]] = {}
        for j in self.neighbours:
            g = torch.Generator(device="cpu")
            g.manual_seed(pair_seed(self.seed, self.rank, j))
            self.generators[j] = g
            self.P[j] = [self._draw(g, (m, self._r(m, n)), x) for x, (m, n) in zip(self.matrices, self.shapes,
                                                                                 strict=True)]
            self.Q[j] = [self._draw(g, (n, self._r(m, n)), x) for x, (m, n) in zip(self.matrices, self.shapes,
                                                                                 strict=True)]

    def _r(self, m: int, n: int) -> int:
        return min(self.rank_r, m, n)

    @staticmethod
    def _draw(g: torch.Generator, shape: tuple[int, int], like: Tensor) -> Tensor:
        # Drawn on the CPU so that both ends (and CPU / CUDA runs) get the same numbers.
        return torch.randn(shape, generator=g, dtype=torch.float32).to(device=like.device, dtype=like.dtype)

    def gossip(self) -> dict[str, Any]:
        bits = {j: 0 for j in self.neighbours}
        dense = self._exact_gossip(self.vectors, 1.0)
        for j in self.neighbours:
            bits[j] += dense
        compress_s = decompress_s = 0.0
        start, self.iteration = self.iteration, self.iteration + self.num_iterations
        if not self.matrices or not self.neighbours:
            return {"bits": bits}
        for it in range(start, start + self.num_iterations):
            if it == 0:  # before any local step all models agree: nothing to send (as the reference)
                break
            odd = it % 2 == 1
            tic = time.perf_counter()
            if not self.warm_start:
                for j in self.neighbours:
                    fresh = self.Q[j] if odd else self.P[j]
                    for k, u in enumerate(fresh):
                        fresh[k] = self._draw(self.generators[j], tuple(u.shape), u)
            sends: dict[int, Tensor] = {}
            for j in self.neighbours:
                us = self.Q[j] if odd else self.P[j]
                vs = []
                for k, x in enumerate(self.matrices):
                    us[k] = u = orthogonalize(us[k], self.eps)
                    mat = x.reshape(x.shape[0], -1)
                    vs.append((mat @ u) if odd else (mat.T @ u))
                sends[j] = flatten(vs)
            compress_s += time.perf_counter() - tic
            got = self.comm.exchange(sends)
            tic = time.perf_counter()
            updates = []
            for j in self.neighbours:
                mine, theirs = sends[j], got[j]
                diff = mine - theirs if self.rank > j else theirs - mine  # v_hi - v_lo on both ends
                store = self.P[j] if odd else self.Q[j]
                for k, fac in enumerate(unflatten(diff, store)):
                    store[k] = fac.clone()
                sign = -1.0 if self.rank > j else 1.0
                updates.append((sign * self.gamma * self.weights[j], j))
                bits[j] += tensor_bits(mine)
            for coef, j in updates:
                for x, p, q in zip(self.matrices, self.P[j], self.Q[j], strict=True):
                    x.add_((p @ q.T).view_as(x), alpha=coef)
            decompress_s += time.perf_counter() - tic
        return {"bits": bits, "compress_s": compress_s, "decompress_s": decompress_s}
