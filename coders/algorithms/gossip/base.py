"""What the gossip methods share: neighbours and weights, the D-PSGD step, compressed messages, consensus.

See `coders.algorithms.gossip` for the methods and their references.
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
from coders.communication.comm import Comm
from coders.communication.packing import flatten, layout_of, pack_bytes, unflatten, unpack_bytes
from coders.communication.topology import Topology
from coders.compressors import make_compressor
from coders.compressors.payload import tensor_bits

__all__ = ["GossipAlgorithm", "CompressedGossip", "make_operator", "consensus", "consensus_distance",
           "pair_seed"]


def pair_seed(seed: int, i: int, j: int) -> int:
    """Seed shared by the two ends of edge (i, j): depends on (seed, min, max) only."""
    lo, hi = min(i, j), max(i, j)
    return int(np.random.SeedSequence([int(seed), lo, hi]).generate_state(1, dtype=np.uint64)[0] >> 1)


def consensus(flat: Tensor, comm: Comm) -> tuple[Tensor, float]:
    """(x_bar, (1/W) sum_i ||x_i - x_bar||^2) of the workers' flat vectors (a collective).

    Koloskova et al. 2019. x_bar is computed in the dtype of `flat`, the squares in float64.
    """
    mean = comm.all_reduce(flat) / comm.world_size
    sq = ((flat.double() - mean.double()) ** 2).sum().reshape(1)
    return mean, float(comm.all_reduce(sq)[0]) / comm.world_size


def consensus_distance(params: Iterable[Tensor], comm: Comm) -> float:
    """(1/W) sum_i ||x_i - x_bar||^2 over all parameters, in float64 (every rank must call it)."""
    return consensus(flatten([p.detach().to(torch.float64) for p in params]), comm)[1]


class GossipAlgorithm(Algorithm):
    """Shared part of the gossip methods: neighbours, weights, local optimizer, bit accounting.

    Options common to all: `gamma` (consensus step; class default; "optimal" = the topology's
    over-relaxed step 2 / (mu_2 + mu_max) of I - W), and those of `Algorithm`:
    `momentum` (0.9 here), `nesterov` (True here; the reference's local optimizer),
    `weight_decay` (0.0), `seed` (0; shared randomness).
    """

    name = "gossip"
    pattern = "p2p"
    allreduce_compatible = False
    can_overlap = True  # the exchanged x_t does not depend on the gradient at x_t
    optimizer_at = "local"
    needs_topology = True
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
            if self.recording("model_diff"):
                self._record_model_differences()
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

    def _record_model_differences(self) -> None:
        """Record x_i - x_j for every neighbour j (issue 12): one extra exchange of the whole model, made
        only on recorded steps and not counted in the method's bits (the model is unchanged)."""
        flat = flatten([p.detach() for p in self.params])
        got = self.comm.exchange({j: flat for j in self.neighbours}) if self.neighbours else {}
        for j in self.neighbours:
            self.record("model_diff", flat - got[j], neighbour=j)

    def _exact_gossip(self, tensors: list[Tensor], gamma: float) -> int:
        """x_i += gamma sum_j w_ij (x_j - x_i) on `tensors` (flattened together); bits per neighbour."""
        if not tensors or not self.neighbours:
            return 0
        flat = flatten(tensors)
        got = self.comm.exchange({j: flat for j in self.neighbours})
        mix = torch.zeros_like(flat)
        for j in self.neighbours:
            mix.add_(got[j] - flat, alpha=self.weights[j])
        flat.add_(mix, alpha=gamma)
        for t, mixed in zip(tensors, unflatten(flat, tensors), strict=True):
            t.copy_(mixed)
        return tensor_bits(flat)


OPERATOR_OPTIONS: dict[str, tuple[str, ...]] = {"topk": ("ratio", "k"), "randk": ("ratio", "k"),
                                                "lowrank": ("rank",)}
"""The keyword options of each default operator of `make_operator` (the others take none)."""


class CompressedGossip(GossipAlgorithm):
    """Shared machinery of Choco-SGD and DeepSqueeze: compress per parameter, one message per neighbour.

    Options: `compressor` (an object with compress(x, state) -> Payload and decompress(payload)),
    or the operator's keyword options of the class's default operator (e.g. `ratio`, `rank`).
    """

    default_compressor: str = ""
    operator_options: tuple[str, ...] = ()
    """What `**options` may hold for the default operator (set per class from `OPERATOR_OPTIONS`); the
    method registry lists them among the method's options."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.operator_options = OPERATOR_OPTIONS.get(cls.default_compressor, ())

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
            compressor = make_operator(self.default_compressor, seed=self.seed, **op_options)
        elif op_options:
            raise ValueError(f"{self.name}: give either compressor= or operator options {sorted(op_options)}")
        if not (hasattr(compressor, "compress") and hasattr(compressor, "decompress")):
            raise ValueError(f"{self.name}: compressor must have compress(x, state) and decompress(payload)")
        self.compressor = compressor
        # Per-parameter operator state; the key makes shared-seed operators draw per tensor.
        self.op_state = [{"key": k} for k in range(len(self.params))]

    def _send_compressed(self, xs: list[Tensor]) -> tuple[list[Tensor], dict[int, list[Tensor]], dict]:
        """Compress each x, send the payloads to every neighbour; return own and received C(x)."""
        self.record("compressor_input", xs)
        tic = time.perf_counter()
        payloads = [self.compressor.compress(x, st) for x, st in zip(xs, self.op_state, strict=True)]
        wire = [t for pl in payloads for t in pl.tensors.values()]
        buf = pack_bytes(wire)
        compress_s = time.perf_counter() - tic
        bits = int(sum(pl.bits for pl in payloads))
        got = self.comm.exchange({j: buf for j in self.neighbours}) if self.neighbours else {}
        tic = time.perf_counter()
        own = [self.compressor.decompress(pl) for pl in payloads]
        theirs: dict[int, list[Tensor]] = {}
        for j in self.neighbours:
            flat = iter(unpack_bytes(got[j], layout_of(wire)))
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


def make_operator(name: str, seed: int = 0, **options: Any) -> Any:
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
