"""What every centralized method shares: `StepStats`, wire-bit models, payload gathering, the local rule.

An algorithm is one worker's view (ARCHITECTURE.md): `Algo(params, comm, **options)`,
`.step(lr) -> StepStats` reads `p.grad`, communicates through `comm`, and updates the
parameters in place. After aggregation the update goes through `torch.optim.SGD` (momentum,
Nesterov and weight decay applied AFTER the reduce, as in PowerSGD's paper code and the
signSGD/Signum reference), so every method is compared under the same local rule.
Deliberate difference: that rule is torch's Nesterov, m <- mu m + u; x <- x - lr (u + mu m).
PowerSGD's paper code (`train.py`, `replace_grad_by_momentum`) steps x <- x - lr (u + m) with the
same m, i.e. about (1 + 1/(1 - mu)) / (1 + mu/(1 - mu)) = 1.1x larger steps at mu = 0.9; one rule
for all methods keeps the comparison about the communication, not the optimizer.

Wire bits per worker per step (compressors.md, sec. 6), S = payload bits of one worker:
    ring all-reduce  2 (W - 1) / W * S            ("allreduce")
    all-gather       sum of the other ranks' S    ("allgather"; what each worker receives)
    parameter server S_up + S_down                ("ps"; the server moves W times that)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from coders.compressors.payload import Payload
from coders.runtime.comm import Comm

__all__ = ["StepStats", "Algorithm", "ring_allreduce_bits", "gather_payloads", "Timer"]


@dataclass
class StepStats:
    """Communication and overhead of one step for one worker (bits per worker per step)."""

    bits_up: float = 0.0
    bits_down: float = 0.0
    bits_wire: float = 0.0
    compress_s: float = 0.0
    decompress_s: float = 0.0
    extra: dict = field(default_factory=dict)


def ring_allreduce_bits(payload_bits: float, world_size: int) -> float:
    """Bits each worker sends in a ring all-reduce of `payload_bits`: 2 (W - 1) / W * S."""
    return 2.0 * (world_size - 1) / world_size * payload_bits


class Timer:
    """Accumulates wall seconds of `with timer:` blocks (synchronizing CUDA so GPU work is counted)."""

    def __init__(self, device: torch.device | None = None):
        self.seconds = 0.0
        self.cuda = device is not None and device.type == "cuda"

    def __enter__(self) -> Timer:
        if self.cuda:
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._t0


def gather_payloads(comm: Comm, payloads: list[Payload]) -> list[list[Payload]]:
    """All-gather one worker's payloads (one per layer) in a single collective; result[rank][layer].

    The payload tensors are viewed as bytes and concatenated; every rank must send the same
    layout (same names, shapes and dtypes: true for fixed-size operators). The receiver reuses
    its own `meta` (shapes, shared seeds), which is common knowledge.
    """
    layout = [(t.shape, t.dtype) for p in payloads for t in p.tensors.values()]
    parts = [t.detach().contiguous().reshape(-1).view(torch.uint8)
             for p in payloads for t in p.tensors.values()]
    device = parts[0].device if parts else torch.device("cpu")
    buf = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8, device=device)
    bufs = comm.all_gather(buf)
    out: list[list[Payload]] = []
    for r, b in enumerate(bufs):
        if b.numel() != buf.numel():
            raise ValueError(
                f"gather_payloads: rank {r} sent {b.numel()} bytes, rank {comm.rank} {buf.numel()}; "
                "operators with data-dependent sizes cannot be gathered this way"
            )
        offset = 0
        pieces = []
        for shape, dtype in layout:
            nbytes = int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()
            # clone: a byte slice at an unaligned offset cannot be viewed as a wider dtype
            pieces.append(b[offset : offset + nbytes].clone().view(dtype).reshape(shape))
            offset += nbytes
        it = iter(pieces)
        out.append([Payload({name: next(it) for name in p.tensors}, p.meta, p.coded_bits) for p in payloads])
    return out


class Algorithm:
    """Base of the centralized methods: parameters, comm, the local SGD rule, option checks.

    Common options: `momentum` (0.0), `nesterov` (False), `weight_decay` (0.0), `seed` (0;
    shared randomness, identical on every rank). Subclasses implement `step`.
    """

    name = "algorithm"
    allreduce_compatible = False
    pattern = "allreduce"
    needs_topology = False
    default_momentum = 0.0
    default_nesterov = False

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, momentum: float | None = None,
                 nesterov: bool | None = None, weight_decay: float = 0.0, seed: int = 0):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError(f"{self.name}: no parameters given")
        if not all(p.is_floating_point() for p in self.params):
            raise ValueError(f"{self.name}: all parameters must be floating point")
        momentum = self.default_momentum if momentum is None else float(momentum)
        nesterov = self.default_nesterov if nesterov is None else bool(nesterov)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"{self.name}: momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"{self.name}: weight_decay must be >= 0, got {weight_decay}")
        if momentum == 0.0:
            nesterov = False
        self.comm = comm
        self.rank = comm.rank
        self.world_size = comm.world_size
        self.seed = int(seed)
        self.device = self.params[0].device
        self.optimizer = torch.optim.SGD(self.params, lr=0.0, momentum=momentum, nesterov=nesterov,
                                         weight_decay=weight_decay)
        self.t = 0

    def grads(self) -> list[Tensor]:
        """The current gradients (zeros where a parameter got none)."""
        return [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in self.params]

    def apply_update(self, updates: list[Tensor], lr: float) -> None:
        """x <- SGD step (momentum / Nesterov / weight decay) with `updates` in place of the gradient."""
        self._check_lr(lr)
        for p, u in zip(self.params, updates, strict=True):
            p.grad = u.to(dtype=p.dtype).reshape(p.shape)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.t += 1

    def _check_lr(self, lr: float) -> None:
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"{self.name}: lr must be a non-negative finite number, got {lr}")

    def eval_params(self) -> list[Tensor] | None:
        """Parameters to evaluate when they are not the worker's own (e.g. MCM's central model)."""
        return None

    def step(self, lr: float) -> StepStats:
        raise NotImplementedError
