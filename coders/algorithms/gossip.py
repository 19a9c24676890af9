"""Decentralized SGD with (compressed) gossip: D-PSGD, PowerGossip, Choco-SGD, DeepSqueeze.

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

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from coders.algorithms.base import Algorithm, StepStats
from coders.compressors import make_compressor, orthogonalize
from coders.runtime.comm import Comm
from coders.runtime.topology import Topology

__all__ = [
    "GossipAlgorithm",
    "DPSGD",
    "PowerGossip",
    "ChocoSGD",
    "ChocoTopK",
    "ChocoRandK",
    "ChocoSign",
    "ChocoLowRank",
    "DeepSqueeze",
    "GOSSIP_METHODS",
    "consensus_distance",
    "pair_seed",
]


def _bits(t: Tensor) -> int:
    return int(t.numel()) * t.element_size() * 8


def pair_seed(seed: int, i: int, j: int) -> int:
    """Seed shared by the two ends of edge (i, j): depends on (seed, min, max) only."""
    lo, hi = min(i, j), max(i, j)
    return int(np.random.SeedSequence([int(seed), lo, hi]).generate_state(1, dtype=np.uint64)[0] >> 1)


def consensus_distance(params: Iterable[Tensor], comm: Comm) -> float:
    """(1/W) sum_i ||x_i - x_bar||^2 over all parameters (a collective: every rank must call it)."""
    flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in params])
    mean = comm.all_reduce(flat) / comm.world_size
    sq = ((flat - mean) ** 2).sum().reshape(1)
    return float(comm.all_reduce(sq)[0]) / comm.world_size


class GossipAlgorithm(Algorithm):
    """Shared part of the gossip methods: neighbours, weights, local optimizer, bit accounting.

    Options common to all: `gamma` (consensus step; class default; "optimal" = the topology's
    over-relaxed step 2 / (mu_2 + mu_max) of I - W), and those of `Algorithm`:
    `momentum` (0.9 here), `nesterov` (True here; the reference's local optimizer),
    `weight_decay` (0.0), `seed` (0; shared randomness).
    """

    name = "gossip"
    needs_topology = True
    allreduce_compatible = False
    pattern = "p2p"
    default_gamma: float | str = 1.0
    default_momentum = 0.9
    default_nesterov = True

    def __init__(
        self,
        params: Iterable[Tensor],
        comm: Comm,
        topology: Topology | None = None,
        *,
        gamma: float | str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(params, comm, **options)
        if topology is None:
            raise ValueError(f"{self.name}: a gossip method needs a topology (e.g. make_topology('ring', W))")
        if topology.workers != comm.world_size:
            raise ValueError(
                f"{self.name}: topology {topology.name} has {topology.workers} workers, "
                f"comm has world_size {comm.world_size}"
            )
        gamma = self.default_gamma if gamma is None else gamma
        if gamma == "optimal":
            gamma = topology.optimal_gossip_step
        if isinstance(gamma, str):
            raise ValueError(f"{self.name}: gamma must be a number or 'optimal', got {gamma!r}")
        self.gamma = float(gamma)
        if not math.isfinite(self.gamma) or self.gamma <= 0:
            raise ValueError(f"{self.name}: gamma must be a positive finite number, got {gamma}")
        self.topology = topology
        self.neighbours = topology.neighbours(self.rank)
        self.weights = {j: topology.weight(self.rank, j) for j in self.neighbours}
        self.self_weight = topology.weight(self.rank, self.rank)
        self.bits_sent_total = 0

    # --- subclasses ---------------------------------------------------------------------------
    def gossip(self) -> dict[str, Any]:
        """Mix the parameters in place; returns bits per neighbour and timings."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    def step(self, lr: float) -> StepStats:
        """x <- gossip(x); then the local optimizer step with `p.grad` (computed on the pre-gossip x)."""
        self._check_lr(lr)
        grads = self.grads()
        with torch.no_grad():
            info = self.gossip()
        self.apply_update(grads, lr)
        per_nb = {j: int(info["bits"].get(j, 0)) for j in self.neighbours}
        sent = sum(per_nb.values())
        self.bits_sent_total += sent
        return StepStats(
            bits_up=float(sent),
            bits_down=float(sent),  # symmetric exchange: each neighbour sends a message of the same size
            bits_wire=float(sent),
            compress_s=float(info.get("compress_s", 0.0)),
            decompress_s=float(info.get("decompress_s", 0.0)),
            extra={
                "bits_per_neighbour": per_nb,
                "bits_per_neighbour_mean": sent / max(len(self.neighbours), 1),
                "neighbours": len(self.neighbours),
                "gamma": self.gamma,
            },
        )

    def _exact_gossip(self, tensors: list[Tensor], gamma: float) -> int:
        """x_i += gamma sum_j w_ij (x_j - x_i) on `tensors` (flattened together); bits per neighbour."""
        if not tensors or not self.neighbours:
            return 0
        flat = torch.cat([t.reshape(-1) for t in tensors])
        got = self.comm.exchange({j: flat for j in self.neighbours})
        mix = torch.zeros_like(flat)
        for j in self.neighbours:
            mix.add_(got[j] - flat, alpha=self.weights[j])
        flat.add_(mix, alpha=gamma)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n
        return _bits(flat)


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
                sends[j] = torch.cat([v.reshape(-1) for v in vs])
            compress_s += time.perf_counter() - tic
            got = self.comm.exchange(sends)
            tic = time.perf_counter()
            updates = []
            for j in self.neighbours:
                mine, theirs = sends[j], got[j]
                diff = mine - theirs if self.rank > j else theirs - mine  # v_hi - v_lo on both ends
                store = self.P[j] if odd else self.Q[j]
                offset = 0
                for k, fac in enumerate(store):
                    n = fac.numel()
                    store[k] = diff[offset : offset + n].view_as(fac).clone()
                    offset += n
                sign = -1.0 if self.rank > j else 1.0
                updates.append((sign * self.gamma * self.weights[j], j))
                bits[j] += _bits(mine)
            for coef, j in updates:
                for x, p, q in zip(self.matrices, self.P[j], self.Q[j], strict=True):
                    x.add_((p @ q.T).view_as(x), alpha=coef)
            decompress_s += time.perf_counter() - tic
        return {"bits": bits, "compress_s": compress_s, "decompress_s": decompress_s}


# ---------------------------------------------------------------------------------------------
# Methods with a compression operator C (coders.compressors)
# ---------------------------------------------------------------------------------------------


def _pack_bytes(tensors: list[Tensor]) -> Tensor:
    """All tensors as one uint8 buffer (what travels to a neighbour)."""
    parts = [t.detach().contiguous().reshape(-1).view(torch.uint8) for t in tensors]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8)


def _unpack_bytes(buf: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Inverse of `_pack_bytes` given tensors of the same shapes and dtypes."""
    out, offset = [], 0
    for t in like:
        n = t.numel() * t.element_size()
        out.append(buf[offset : offset + n].clone().view(t.dtype).reshape(t.shape))
        offset += n
    return out


class _CompressedGossip(GossipAlgorithm):
    """Shared machinery of Choco-SGD and DeepSqueeze: compress per parameter, one message per neighbour.

    Options: `compressor` (an object with compress(x, state) -> Payload and decompress(payload)),
    or the operator's keyword options of the class's default operator (e.g. `ratio`, `rank`).
    """

    default_compressor: str = ""

    def __init__(
        self,
        params: Iterable[Tensor],
        comm: Comm,
        topology: Topology | None = None,
        *,
        compressor: Any = None,
        **options: Any,
    ) -> None:
        op_keys = {"ratio", "k", "rank"}
        op_options = {k: options.pop(k) for k in list(options) if k in op_keys}
        super().__init__(params, comm, topology, **options)
        if compressor is None:
            compressor = _make_operator(self.default_compressor, seed=self.seed, **op_options)
        elif op_options:
            raise ValueError(f"{self.name}: give either compressor= or operator options {sorted(op_options)}")
        if not (hasattr(compressor, "compress") and hasattr(compressor, "decompress")):
            raise ValueError(f"{self.name}: compressor must have compress(x, state) and decompress(payload)")
        self.compressor = compressor
        # Per-parameter operator state; the key makes shared-seed operators draw per tensor.
        self.op_state = [{"key": k} for k in range(len(self.params))]

    def _send_compressed(self, xs: list[Tensor]) -> tuple[list[Tensor], dict[int, list[Tensor]], dict]:
        """Compress each x, send the payloads to every neighbour; return own and received C(x)."""
        tic = time.perf_counter()
        payloads = [self.compressor.compress(x, st) for x, st in zip(xs, self.op_state, strict=True)]
        wire = [t for pl in payloads for t in pl.tensors.values()]
        buf = _pack_bytes(wire)
        compress_s = time.perf_counter() - tic
        bits = int(sum(pl.bits for pl in payloads))
        got = self.comm.exchange({j: buf for j in self.neighbours}) if self.neighbours else {}
        tic = time.perf_counter()
        own = [self.compressor.decompress(pl) for pl in payloads]
        theirs: dict[int, list[Tensor]] = {}
        for j in self.neighbours:
            flat = iter(_unpack_bytes(got[j], wire))
            rebuilt = [
                type(pl)(tensors={name: next(flat) for name in pl.tensors}, meta=pl.meta) for pl in payloads
            ]
            theirs[j] = [self.compressor.decompress(pl) for pl in rebuilt]
        info = {
            "bits": {j: bits for j in self.neighbours},
            "compress_s": compress_s,
            "decompress_s": time.perf_counter() - tic,
        }
        return own, theirs, info


class ChocoSGD(_CompressedGossip):
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


class ChocoTopK(ChocoSGD):
    """Choco-SGD with top-k (default 1% per tensor, gamma 0.0375 as tuned in epfml/powergossip).

    The indices travel as int32 (`coders.compressors.TopK`, as GRACE and the PowerSGD paper code);
    epfml/powergossip's `TopK` sends int64, so its messages are 32 k bits larger than ours. k is
    ceil(ratio d) here and floor (at least 1) there: at most one entry apart.
    """

    name = "choco-topk"
    default_compressor = "topk"
    default_gamma = 0.0375


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


class ChocoSign(ChocoSGD):
    """Choco-SGD with sign-and-norm, (||x||_1 / d) sign(x) (gamma 0.45 as tuned in epfml/powergossip)."""

    name = "choco-sign"
    default_compressor = "scaled_sign"
    default_gamma = 0.45


class ChocoLowRank(ChocoSGD):
    """Choco-SGD with a rank-r operator (rank 1 default; one warm-started power step, PowerSGD's).

    The reference's `SVD` baseline has no tuned value; gamma 0.03 from a sweep on digits-cnn,
    ring of 8 (0.1 and above diverged; benchmarks/RESULTS.md).
    """

    name = "choco-lowrank"
    default_compressor = "lowrank"
    default_gamma = 0.03


class DeepSqueeze(_CompressedGossip):
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


def _make_operator(name: str, seed: int = 0, **options: Any) -> Any:
    """The coders.compressors operator of a Choco / DeepSqueeze variant (per-tensor, defaults as epfml)."""
    size = {"k": options["k"]} if "k" in options else {"ratio": options.get("ratio", 0.01)}
    if name == "topk":
        return make_compressor("topk", **size)
    if name == "randk":
        # Choco needs a contractive operator: keep the values unscaled (as epfml's RandomK).
        return make_compressor("randk", seed=seed, unbiased=False, **size)
    if name == "lowrank":
        return make_compressor("lowrank", rank=options.get("rank", 1), seed=seed)
    if options:
        raise ValueError(f"operator {name!r} takes no options, got {sorted(options)}")
    return make_compressor(name)


GOSSIP_METHODS: dict[str, type[GossipAlgorithm]] = {
    cls.name: cls
    for cls in (DPSGD, PowerGossip, ChocoTopK, ChocoRandK, ChocoSign, ChocoLowRank, DeepSqueeze)
}
