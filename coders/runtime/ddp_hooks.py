"""DDP communication hooks for the methods that fit DDP's bucket model.

`ddp.register_comm_hook(state, hook)`: DDP hands each gradient bucket to `hook(state, bucket)`,
which must return a future holding a tensor shaped like `bucket.buffer()` with the AVERAGED
(or voted) gradient. What fits (compressors.md, sec. 2): linear operators by all-reduce
(fp16 / bf16 casts with the division by W before the cast, random-k with a shared seed),
PowerSGD, and fixed-size operators (top-k, QSGD, scaled sign) or sign majority vote by an
all-gather decoded identically on every rank. Gossip and MCM do not fit (the models differ
across ranks); use `coders.runtime.train` for them.

- `compressor_hook` + `CompressorHookState(compressor, error_feedback)`: any `Compressor`.
- `sign_vote_hook` + `SignVoteHookState(beta)`: signSGD-MV / Signum-MV (momentum before the sign
  kept per bucket; ties vote 0). The optimizer then applies lr * vote.
- `powersgd_hook` + `PowerSGDHookState`: PowerSGD per bucket as in Vogels et al. 2019 and the
  options of `torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook` (rank, start_iter of
  plain all-reduce iterations, min_compression_rate, error feedback over the bucket, warm start
  with the reused Q re-orthogonalized, first Q from `numpy.random.RandomState(random_seed)`), so
  that both give the same model (tested on gloo). As torch, `state.rng` is drawn for every bucket
  that needs fresh Qs (also a bucket with no matrix), and P / Q travel in the bucket's dtype, so
  they are counted at its width (16 bits for bf16 / fp16 buckets).
Every state counts `bits_up` (payload bits per worker, summed over buckets and steps).
Per-bucket memories (EF residual, sign momentum) are keyed by the bucket index AND its layout
(the shapes of its gradients): DDP rebuilds its buckets after the first iteration, and a memory
kept for the old bucket `idx` would otherwise be added to different parameters (or fail on a
size mismatch). On a layout change the memory restarts from zero (the PowerSGD state instead
requires start_powerSGD_iter > 1, as PyTorch's).
Collectives run synchronously inside the hook; the returned future is already completed.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from coders.algorithms.base import gather_payloads
from coders.algorithms.signsgd import majority_vote
from coders.communication.comm import DistComm
from coders.communication.packing import flatten, unflatten
from coders.compressors import Compressor, ErrorFeedback
from coders.compressors.lowrank import orthogonalize, power_step
from coders.compressors.payload import Payload, tensor_bits
from coders.compressors.sign import pack_signs, unpack_signs

__all__ = ["CompressorHookState", "compressor_hook", "SignVoteHookState", "sign_vote_hook",
           "PowerSGDHookState", "powersgd_hook"]


def _bucket_memory(store: dict, bucket: dist.GradBucket, fresh: Any) -> Any:
    """The memory kept for this bucket, restarted (`fresh`) when the bucket's layout changed."""
    layout = tuple(tuple(g.shape) for g in bucket.gradients())
    kept = store.get(bucket.index())
    if kept is None or kept[0] != layout:
        kept = store[bucket.index()] = (layout, fresh)
    return kept[1]


def _done(t: Tensor) -> torch.futures.Future[torch.Tensor]:
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(t)
    return fut


@dataclass
class CompressorHookState:
    """State of `compressor_hook`: the operator, optional error feedback, per-bucket memories."""

    compressor: Compressor
    error_feedback: bool = False
    process_group: Any = None
    bits_up: int = 0
    states: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.compressor, Compressor):
            raise ValueError(f"CompressorHookState needs a Compressor, got {type(self.compressor).__name__}")
        self._op = ErrorFeedback(self.compressor) if self.error_feedback else self.compressor


def compressor_hook(state: CompressorHookState,
                    bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Mean of the W decompressed buckets: all-reduce for linear operators, else all-gather."""
    comm = DistComm(state.process_group)
    buf = bucket.buffer()
    w = comm.world_size
    st = _bucket_memory(state.states, bucket, {"key": bucket.index()})
    op = state._op
    if state.compressor.linear:
        # divide by W before compressing so low-precision sums cannot overflow
        payload = op.compress(buf / w, st)
        state.bits_up += payload.bits
        summed = {k: comm.all_reduce(t) for k, t in payload.tensors.items()}
        out = op.decompress(Payload(summed, payload.meta))
    else:
        payload = op.compress(buf, st)
        state.bits_up += payload.bits
        out = torch.zeros_like(buf)
        for rank_payloads in gather_payloads(comm, [payload]):
            out += op.decompress(rank_payloads[0]).to(buf.dtype)
        out /= w
    buf.copy_(out.reshape(buf.shape))
    return _done(buf)


@dataclass
class SignVoteHookState:
    """State of `sign_vote_hook`: beta (0 = signSGD-MV, 0.9 = Signum), per-bucket momentum."""

    beta: float = 0.0
    process_group: Any = None
    bits_up: int = 0
    momentum: dict = field(default_factory=dict)


def sign_vote_hook(state: SignVoteHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Replace the bucket by the majority vote sign(sum_i sign(m_i)) over workers."""
    comm = DistComm(state.process_group)
    buf = bucket.buffer()
    g = buf.detach().float()
    slot = _bucket_memory(state.momentum, bucket, {})
    if state.beta == 0.0:
        m = g
    else:
        m = slot.setdefault("m", torch.zeros_like(g)).mul_(state.beta).add_(g, alpha=1 - state.beta)
    packed = pack_signs(m)
    state.bits_up += packed.numel() * 8
    vote = majority_vote([unpack_signs(b, g.numel()) for b in comm.all_gather(packed)])
    buf.copy_(vote.to(buf.dtype))
    return _done(buf)


@dataclass
class PowerSGDHookState:
    """Options as `torch...powerSGD_hook.PowerSGDState`; per-bucket error, P and Q memories."""

    process_group: Any = None
    matrix_approximation_rank: int = 1
    start_powerSGD_iter: int = 1000
    min_compression_rate: float = 2.0
    use_error_feedback: bool = True
    warm_start: bool = True
    orthogonalization_epsilon: float = 0.0
    random_seed: int = 0
    iter: int = 0
    bits_up: int = 0
    errors: dict = field(default_factory=dict)
    qs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.matrix_approximation_rank < 1:
            raise ValueError(f"matrix_approximation_rank must be >= 1, got {self.matrix_approximation_rank}")
        if (self.use_error_feedback or self.warm_start) and self.start_powerSGD_iter <= 1:
            raise ValueError("start_powerSGD_iter must be > 1 with error feedback or warm start "
                             "(DDP rebuilds its buckets after the first iteration)")
        self.rng = np.random.RandomState(self.random_seed)


def powersgd_hook(state: PowerSGDHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """PowerSGD on one bucket (see module docstring); the first start_powerSGD_iter steps all-reduce."""
    comm = DistComm(state.process_group)
    w = comm.world_size
    buf = bucket.buffer()
    if state.iter < state.start_powerSGD_iter:
        buf.copy_(comm.all_reduce(buf) / w)
        state.bits_up += tensor_bits(buf)
        if bucket.is_last():
            state.iter += 1
        return _done(buf)
    idx = bucket.index()
    if state.use_error_feedback:
        if idx in state.errors:
            buf.add_(state.errors[idx])
        before = buf.detach().clone()
    grads = bucket.gradients()  # views into buf
    r_max = state.matrix_approximation_rank
    mats, dense = [], []
    for g in grads:
        mat = g.view(g.shape[0], -1)
        n, m = mat.shape
        r = min(n, m, r_max)
        (mats if (n + m) * r * state.min_compression_rate < n * m else dense).append((g, mat, r))
    # uncompressed tensors: one all-reduce of their concatenation
    if dense:
        grads_dense = [g for g, _, _ in dense]
        flat = flatten(grads_dense)
        mean = comm.all_reduce(flat) / w
        state.bits_up += tensor_bits(flat)
        for g, m in zip(grads_dense, unflatten(mean, grads_dense), strict=True):
            g.copy_(m)
    # order by shape groups (first occurrence), as the reference draws its random Qs in that order
    groups: dict[tuple, list] = defaultdict(list)
    for item in mats:
        groups[tuple(item[1].shape)].append(item)
    ordered = [item for items in groups.values() for item in items]
    # torch draws state.rng for EVERY bucket that needs fresh Qs (no warm start, or the bucket's first
    # PowerSGD step), also a bucket with no matrix: drawing only for buckets with matrices would shift
    # every later bucket's Qs and the two hooks would diverge
    if state.warm_start and idx in state.qs:
        qs = [orthogonalize(q, state.orthogonalization_epsilon) for q in state.qs[idx]]
    else:
        gen = torch.Generator().manual_seed(int(state.rng.randint(1_000_000_000)))
        qs = [orthogonalize(torch.randn(mat.shape[1], r, generator=gen, dtype=buf.dtype).to(buf.device),
                            state.orthogonalization_epsilon) for _, mat, r in ordered]
    if mats:
        def all_reduce(ts: list[Tensor]) -> list[Tensor]:
            flat = flatten(ts)
            state.bits_up += tensor_bits(flat)  # P and Q travel in the bucket's dtype (16 bits for bf16)
            return unflatten(comm.all_reduce(flat), ts)

        eps = state.orthogonalization_epsilon
        ps, qs = power_step([mat for _, mat, _ in ordered], qs, eps, all_reduce, w)
        for (_, mat, _), p, q in zip(ordered, ps, qs, strict=True):
            mat.copy_(p @ q.T)
    if state.warm_start:
        state.qs[idx] = qs
    if state.use_error_feedback:
        state.errors[idx] = before - buf
    if bucket.is_last():
        state.iter += 1
    return _done(buf)

