"""Coded SGD: quantized gradients sent as entropy-coded bytes, decoded by every receiver.

The GenNorm coding scheme as a distributed method (issue 17): each worker quantizes its
gradient (with error feedback as an option), fits its probability model, entropy-codes the
symbols and all-gathers ONE variable-length uint8 message; every rank decodes every message from
what it carries (`coders.compressors.entropy_coded`, which documents the message layout) and
averages the W reconstructions in rank order, then applies the local rule:

    worker i:  p_i = g_i (+ e_i);  m_i = code(Q(p_i));  (e_i <- p_i - Q(p_i) with EF)
    all:       g_hat = (1/W) sum_i decode(m_i) = (1/W) sum_i Q(p_i);   x <- SGD step with g_hat

The whole gradient is one flat vector (model order) with one model per worker per refit; the
quantizer's per-block scales (`block_size`, default 4096 entries, bf16 each) adapt the step to
each region of the model. Bits are counted from the bytes: bits_up = 8 x len(m_i), bits_down =
8 x the bytes of the other W - 1 messages this worker receives (all-gather). On torch.distributed
the all-gather pads every message to the longest one (`DistComm.all_gather`); the count is of the
message bytes, which is what a variable-length transport would move.

Options: `quantizer` ("uniform": deterministic rounding at c x RMS; "stochastic": unbiased
stochastic rounding; "qsgd": QSGD's s levels per bucket), `scale_mult` (c, 0.5), `block_size`
(4096; None: one RMS for the whole gradient), `levels` (16) and `bucket_size` (512) for qsgd,
`model` ("zi-gennorm", the default: GenNorm plus a point mass at 0, since real gradients hold
many exact zeros -- 40% on digits-cnn, where plain "gennorm" costs 1.9x the bits; "gennorm",
"laplace", "histogram"), `coder` ("ans", "huffman"), `refresh`
("step": refit and send the model every step; k: every k steps, reused in between; "once"),
`error_feedback` (True), `fit_sample` (fit on at most that many values, 2^17), and `Algorithm`'s
momentum (0.9) / nesterov / weight_decay / seed. `compress_s` times quantize + fit + encode,
`decompress_s` the W decodes and the average.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from coders.algorithms.base import Algorithm, StepStats, Timer
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.packing import flatten, unflatten
from coders.compressors.entropy_coded import EntropyCodec
from coders.compressors.sparse import shared_seed

__all__ = ["CodedSGD", "sender_seed"]

_STREAM = 17  # keeps this method's rounding noise apart from other shared_seed users


def sender_seed(seed: int, rank: int, key: int = 0) -> int:
    """The rounding-noise seed of worker `rank` for tensor `key` (0: the whole gradient, or a DDP bucket)."""
    return shared_seed(seed, 1000 * rank + key, _STREAM)


@register
class CodedSGD(Algorithm):
    """SGD on the average of W entropy-coded quantized gradients (one worker's view; module doc)."""

    name = "coded-sgd"
    pattern = "allgather"
    allreduce_compatible = False
    can_overlap = True  # per-bucket messages: `coders.runtime.ddp_hooks.coded_hook`
    optimizer_at = "replicas"
    needs_topology = False
    default_momentum = 0.9

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, quantizer: str = "uniform",
                 scale_mult: float = 0.5, block_size: int | None = 4096, levels: int = 16,
                 bucket_size: int = 512, model: str = "zi-gennorm", coder: str = "ans",
                 refresh: str | int = "step", error_feedback: bool = True, fit_sample: int | None = 1 << 17,
                 **options):
        super().__init__(params, comm, **options)
        self.codec = EntropyCodec(quantizer, scale_mult=scale_mult, block_size=block_size, levels=levels,
                                  bucket_size=bucket_size, model=model, coder=coder, refresh=refresh,
                                  fit_sample=fit_sample)
        self.error_feedback = bool(error_feedback)
        self.sender = self.codec.sender(sender_seed(self.seed, self.rank))
        self.receivers = [self.codec.receiver() for _ in range(self.world_size)]
        self.error: Tensor | None = None
        self.x_hat: Tensor | None = None
        """This worker's quantized vector of the last step (what every receiver rebuilt)."""
        self.decoded: list[Tensor] = []
        """The W vectors this worker decoded from the last step's messages, by sender rank."""

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        grads = self.grads()
        w = self.world_size
        comp, dec = Timer(self.device), Timer(self.device)
        with torch.no_grad():
            with comp:
                p = flatten(grads).float()
                if self.error_feedback and self.error is not None:
                    p = p + self.error
                msg, x_hat, info = self.codec.encode(p, self.sender)
                if self.error_feedback:
                    self.error = p - x_hat
            gathered = self.comm.all_gather(msg)
            with dec:
                self.decoded = [self.codec.decode(m, self.receivers[r], p.shape, p.device)
                                for r, m in enumerate(gathered)]
                acc = torch.zeros_like(p)
                for d in self.decoded:
                    acc += d
                mean = acc / w
            self.x_hat = x_hat
            self.apply_update(unflatten(mean, grads), lr)
        up = 8 * msg.numel()
        down = 8 * sum(m.numel() for r, m in enumerate(gathered) if r != self.rank)
        return StepStats(float(up), float(down), float(down), comp.seconds, dec.seconds,
                         {"model_sent": info["model_sent"], "bits_up_side": 8.0 * info["side_bytes"]})
