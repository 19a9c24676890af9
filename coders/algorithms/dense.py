"""Dense all-reduce baselines: fp32, fp16 and bf16 gradients averaged by ring all-reduce.

As PyTorch's `fp16_compress_hook` / `bf16_compress_wrapper`: divide by W BEFORE the cast so
the low-precision sum cannot overflow, sum in the low-precision type, cast back. The local
rule (momentum 0.9 by default) is applied to the averaged gradient. It is heavy-ball by default,
while `powersgd` and the gossip methods default to Nesterov (their references' optimizer; PowerSGD's
paper ran its SGD baseline with Nesterov too): pass nesterov=True to compare under the same rule.
"""

from __future__ import annotations

import torch

from coders.algorithms.base import Algorithm, StepStats, Timer, ring_allreduce_bits
from coders.algorithms.registry import register
from coders.communication.packing import flatten, unflatten

__all__ = ["DenseAllReduce", "FP32AllReduce", "FP16AllReduce", "BF16AllReduce"]


class DenseAllReduce(Algorithm):
    """Mean gradient by all-reduce in `dtype` (fp32 / fp16 / bf16); payload = b_dtype * d bits."""

    name = "fp32"
    pattern = "allreduce"
    allreduce_compatible = True
    can_overlap = True
    optimizer_at = "replicas"
    needs_topology = False
    default_momentum = 0.9
    wire_dtype = torch.float32

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        grads = self.grads()
        w = self.world_size
        comp, dec = Timer(self.device), Timer(self.device)
        with torch.no_grad():
            with comp:
                flat = (flatten(grads).float() / w).to(self.wire_dtype)
            total = self.comm.all_reduce(flat)
            with dec:
                mean = total.float()
            self.apply_update(unflatten(mean, grads), lr)
        bits = float(flat.numel() * flat.element_size() * 8)
        return StepStats(bits, bits, ring_allreduce_bits(bits, w), comp.seconds, dec.seconds)


@register(presets={"sgd": {}})
class FP32AllReduce(DenseAllReduce):
    """Uncompressed data-parallel SGD (32 bits per entry)."""

    name = "fp32"
    wire_dtype = torch.float32


@register
class FP16AllReduce(DenseAllReduce):
    """fp16 all-reduce (16 bits per entry)."""

    name = "fp16"
    wire_dtype = torch.float16


@register
class BF16AllReduce(DenseAllReduce):
    """bf16 all-reduce (16 bits per entry)."""

    name = "bf16"
    wire_dtype = torch.bfloat16
