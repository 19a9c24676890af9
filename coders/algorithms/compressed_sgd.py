"""Data-parallel SGD with a compressed gradient, with or without error feedback.

    worker i, per tensor: c_i = C(g_i)            (or C(g_i + e_i), e_i <- g_i + e_i - c_i with EF)
    all:    g_hat = (1/W) sum_i decompress(c_i)   (rank order);  local rule on g_hat
Linear operators (random-k with a shared seed) are summed by all-reduce of the values;
the others (top-k, QSGD) are all-gathered and decoded on every rank.
EF: Seide et al. 2014; Stich et al., "Sparsified SGD with Memory", NeurIPS 2018.
QSGD: Alistarh et al. 2017. Random-k: Wangni et al. 2018 (GRACE `randomk`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from coders.algorithms.base import Algorithm, StepStats, Timer, gather_payloads, ring_allreduce_bits
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.packing import flatten, unflatten
from coders.compressors import QSGD, Compressor, ErrorFeedback, RandomK, TopK
from coders.compressors.coded import entropy_coded_bits
from coders.compressors.payload import Payload
from coders.compressors.sparse import shared_seed

__all__ = ["CompressedSGD", "TopKSGD", "RandomKSGD", "QSGDSGD"]


class CompressedSGD(Algorithm):
    """SGD on the average of W compressed gradients; `make_compressor(layer)` gives each tensor's operator.

    `entropy_coder` ("ans", "huffman", ...; default None = off, it costs CPU time) adds the
    entropy-coded uplink size `extra["bits_up_coded"]` (`coders.compressors.coded`).
    """

    name = "compressed-sgd"
    allreduce_compatible = False
    can_overlap = True
    optimizer_at = "replicas"
    needs_topology = False
    default_momentum = 0.9

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, error_feedback: bool = False,
                 entropy_coder: str | None = None, **options):
        super().__init__(params, comm, **options)
        self.error_feedback = bool(error_feedback)
        self.entropy_coder = entropy_coder
        self.compressors: list[Compressor] = []
        for layer in range(len(self.params)):
            c = self.make_compressor(layer)
            self.compressors.append(ErrorFeedback(c) if self.error_feedback else c)
        self.linear = all(c.linear for c in self.compressors)
        self.states: list[dict] = [{"key": layer} for layer in range(len(self.params))]

    def make_compressor(self, layer: int) -> Compressor:
        raise NotImplementedError

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        grads = self.grads()
        w = self.world_size
        comp, dec = Timer(self.device), Timer(self.device)
        with torch.no_grad():
            # under EF the compressor gets g + e (ErrorFeedback's residual, before this step updates it)
            self.record("compressor_input", lambda: [g + s["error"] if "error" in s else g
                                                     for g, s in zip(grads, self.states, strict=True)])
            with comp:
                payloads = [c.compress(g, s)
                            for c, g, s in zip(self.compressors, grads, self.states, strict=True)]
            up = float(sum(p.bits for p in payloads))
            coded = [p.coded_bits for p in payloads]
            if self.linear:
                # shared-seed operators: same positions on every rank, so the values can be summed
                vals = [p.tensors["values"] for p in payloads]
                summed = unflatten(self.comm.all_reduce(flatten(vals)) / w, vals)
                with dec:
                    mean = [c.decompress(Payload({"values": v}, p.meta))
                            for c, v, p in zip(self.compressors, summed, payloads, strict=True)]
                down, wire = up, ring_allreduce_bits(up, w)
            else:
                gathered = gather_payloads(self.comm, payloads)
                with dec:
                    mean = []
                    for layer, c in enumerate(self.compressors):
                        acc = torch.zeros_like(grads[layer], dtype=torch.float32)
                        for rank_payloads in gathered:
                            acc += c.decompress(rank_payloads[layer]).float()
                        mean.append(acc / w)
                down = wire = up * (w - 1)
            self.apply_update(mean, lr)
        extra = {}
        if all(c is not None for c in coded):
            extra["bits_up_ideal"] = float(sum(coded))
        if self.entropy_coder:
            extra["bits_up_coded"] = float(sum(entropy_coded_bits(c, p, self.entropy_coder)
                                               for c, p in zip(self.compressors, payloads, strict=True)))
        return StepStats(up, float(down), float(wire), comp.seconds, dec.seconds, extra)


@register(presets={"topk-ef": {"error_feedback": True}})
class TopKSGD(CompressedSGD):
    """Top-k SGD (all-gather of values + int32 indices); `ratio` (0.01) or `k` per tensor."""

    name = "topk"
    pattern = "allgather"

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, ratio: float | None = 0.01,
                 k: int | None = None, **options):
        self.ratio, self.k = ratio, k
        super().__init__(params, comm, **options)

    def make_compressor(self, layer: int) -> Compressor:
        return TopK(ratio=self.ratio, k=self.k)


@register(presets={"randk-ef": {"error_feedback": True}})
class RandomKSGD(CompressedSGD):
    """Random-k SGD with a shared seed (all-reduce of values). Unbiased (d/k scaling) without EF,
    the unscaled contractive operator with EF."""

    name = "randk"
    allreduce_compatible = True
    pattern = "allreduce"

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, ratio: float | None = 0.01,
                 k: int | None = None, error_feedback: bool = False, **options):
        self.ratio, self.k = ratio, k
        self._unbiased = not error_feedback
        super().__init__(params, comm, error_feedback=error_feedback, **options)

    def make_compressor(self, layer: int) -> Compressor:
        return RandomK(ratio=self.ratio, k=self.k, seed=self.seed, unbiased=self._unbiased)


@register(presets={"qsgd-ef": {"error_feedback": True}})
class QSGDSGD(CompressedSGD):
    """QSGD SGD (all-gather of bucket norms + packed levels); `levels` (16), `bucket_size` (512).
    With EF the decoder uses the contractive Q / (1 + omega) (the plain unbiased Q diverges under EF
    when omega > 1)."""

    name = "qsgd"
    pattern = "allgather"

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, levels: int = 16,
                 bucket_size: int | None = 512, **options):
        self.levels, self.bucket_size = levels, bucket_size
        self.error_feedback = bool(options.get("error_feedback", False))
        super().__init__(params, comm, **options)

    def make_compressor(self, layer: int) -> Compressor:
        # each worker draws its own rounding noise; under EF the contractive Q / (1 + omega)
        return QSGD(self.levels, self.bucket_size, seed=shared_seed(self.seed, 1000 * self.rank + layer, 1),
                    contractive=self.error_feedback)
