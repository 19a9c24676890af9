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

Each method class declares its facts (`FACTS`), read by the registry, the runtimes and the
analysis (never kept as strings elsewhere):
    name                  the registered method name
    pattern               "allreduce" | "allgather" | "ps" | "p2p" (the collective, for the network model)
    allreduce_compatible  the payloads of different workers can be summed before decoding
    can_overlap           its communication can run during the backward pass: a (linear or vote)
                          reduction of per-layer gradient messages fits a bucketed DDP comm hook;
                          gossip exchanges x_t, which does not depend on the gradient at x_t; MCM's
                          workers need the broadcast model before their next forward and its server
                          step needs every uplink message first, so it does not overlap
    optimizer_at          where the optimizer rule runs: "replicas" (every worker, on the aggregated
                          update, models stay identical), "server" (a central model, MCM), "local"
                          (each worker on its own model, gossip)
    needs_topology        it is decentralized and takes a `Topology`

What a method compresses (issue 12): where it compresses, a method calls
`self.record(kind, values)` (`"compressor_input"`: the tensor its compressor gets, e.g. g + e under
error feedback, the momentum before the sign, PowerSGD's matrix M; gossip methods add
`"model_diff"`, x_i - x_j per neighbour j). It is a no-op unless a recorder is attached
(`attach_recorder`; `coders.runtime.capture.MethodCapture` writes a capture), so it costs nothing
when nobody records. A recorder has `wants(kind) -> bool` (False off the recorded steps) and
`record(kind, {param index: tensor}, neighbour)`.

Wire bits per worker per step (compressors.md, sec. 6), S = payload bits of one worker:
    ring all-reduce  2 (W - 1) / W * S            ("allreduce")
    all-gather       sum of the other ranks' S    ("allgather"; what each worker receives)
    parameter server S_up + S_down                ("ps"; the server moves W times that)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from coders.communication.comm import Comm
from coders.communication.packing import layout_of, pack_bytes, unpack_bytes
from coders.compressors.payload import Payload

__all__ = ["StepStats", "Algorithm", "ring_allreduce_bits", "gather_payloads", "Timer", "FACTS", "PATTERNS",
           "OPTIMIZER_PLACES", "missing_facts"]

PATTERNS = ("allreduce", "allgather", "ps", "p2p")
OPTIMIZER_PLACES = ("replicas", "server", "local")
FACTS: dict[str, tuple | type] = {
    "name": str,
    "pattern": PATTERNS,
    "allreduce_compatible": bool,
    "can_overlap": bool,
    "optimizer_at": OPTIMIZER_PLACES,
    "needs_topology": bool,
}
"""Every fact a method class declares, with its type or its allowed values."""


def missing_facts(cls: type) -> list[str]:
    """The facts `cls` does not declare (or declares with a wrong type / value), as messages."""
    bad = []
    for fact, allowed in FACTS.items():
        if not hasattr(cls, fact):
            bad.append(f"{fact} (not declared)")
            continue
        value = getattr(cls, fact)
        if isinstance(allowed, tuple):
            if value not in allowed:
                bad.append(f"{fact}={value!r} (choose from {allowed})")
        elif type(value) is not allowed:
            bad.append(f"{fact}={value!r} (not a {allowed.__name__})")
    return bad


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


def unflatten_like(flat: Tensor, params: list[Tensor]) -> list[Tensor]:
    """A flat vector over `params` (model order) split into one flat piece per parameter."""
    total = sum(p.numel() for p in params)
    if flat.numel() != total:
        raise ValueError(f"a flat vector over the parameters needs {total} entries, got {flat.numel()}")
    return list(flat.reshape(-1).split([p.numel() for p in params]))


def gather_payloads(comm: Comm, payloads: list[Payload]) -> list[list[Payload]]:
    """All-gather one worker's payloads (one per layer) in a single collective; result[rank][layer].

    The payload tensors are viewed as bytes and concatenated; every rank must send the same
    layout (same names, shapes and dtypes: true for fixed-size operators). The receiver reuses
    its own `meta` (shapes, shared seeds), which is common knowledge.
    """
    tensors = [t for p in payloads for t in p.tensors.values()]
    layout = layout_of(tensors)
    buf = pack_bytes(tensors)
    bufs = comm.all_gather(buf)
    out: list[list[Payload]] = []
    for r, b in enumerate(bufs):
        if b.numel() != buf.numel():
            raise ValueError(
                f"gather_payloads: rank {r} sent {b.numel()} bytes, rank {comm.rank} {buf.numel()}; "
                "operators with data-dependent sizes cannot be gathered this way"
            )
        it = iter(unpack_bytes(b, layout))
        out.append([Payload({name: next(it) for name in p.tensors}, p.meta, p.coded_bits) for p in payloads])
    return out


class Algorithm:
    """Base of the centralized methods: parameters, comm, the local SGD rule, option checks.

    Common options: `momentum` (0.0), `nesterov` (False), `weight_decay` (0.0), `seed` (0;
    shared randomness, identical on every rank). Subclasses implement `step`.
    """

    # the facts (FACTS): declared by each concrete method class, none here
    name: ClassVar[str]
    pattern: ClassVar[str]
    allreduce_compatible: ClassVar[bool]
    can_overlap: ClassVar[bool]
    optimizer_at: ClassVar[str]
    needs_topology: ClassVar[bool]
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
        self.recorder: Any = None

    # --- what the method compresses (issue 12) ----------------------------------------------------
    def attach_recorder(self, recorder: Any) -> None:
        """Send every `record` call to `recorder` (`wants(kind)`, `record(kind, values, neighbour)`)."""
        self.recorder = recorder

    def recording(self, kind: str) -> bool:
        """True when a recorder is attached and records `kind` at this step (the same on every rank)."""
        return self.recorder is not None and self.recorder.wants(kind)

    def record(self, kind: str, values: Tensor | list | dict | Callable[[], Any],
               neighbour: int | None = None) -> None:
        """Expose what the method compresses: a no-op unless a recorder records `kind` this step.

        `values`: one flat tensor over all parameters (model order), a list aligned with the
        parameters (None where nothing is compressed), a dict {parameter index: tensor}, or a
        callable returning one of those (evaluated only when recording). Each tensor has the
        parameter's number of entries (any shape, e.g. PowerSGD's matrix view).
        """
        if not self.recording(kind):
            return
        if callable(values):
            values = values()
        if isinstance(values, Tensor):
            values = unflatten_like(values, self.params)
        if isinstance(values, list):
            values = {i: v for i, v in enumerate(values) if v is not None}
        per = {}
        for i, v in values.items():
            if v.numel() != self.params[i].numel():
                raise ValueError(f"{self.name}: record({kind!r}): parameter {i} has {self.params[i].numel()} "
                                 f"entries, got {v.numel()}")
            per[i] = v.detach().reshape(self.params[i].shape)
        self.recorder.record(kind, per, neighbour)

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
