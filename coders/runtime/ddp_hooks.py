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
- `coded_hook` + `CodedHookState(params=..., quantizer=..., model=..., coder=..., refresh=...,
  error_feedback=...)`: coded SGD per bucket (`coders.algorithms.coded_sgd`): quantize, fit,
  entropy-code, all-gather the variable-length bytes, decode every rank's message, average.
  Given the model's `params`, the bucket's gradients are coded in model order, and its
  memories are keyed by the set of parameters (not the layout), so a one-bucket model gives
  exactly the `coded-sgd` method's model (tested on gloo).
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
from coders.algorithms.coded_sgd import sender_seed
from coders.algorithms.signsgd import majority_vote
from coders.communication.comm import DistComm
from coders.communication.packing import flatten, unflatten
from coders.compressors import Compressor, ErrorFeedback
from coders.compressors.entropy_coded import EntropyCodec
from coders.compressors.lowrank import orthogonalize, power_step
from coders.compressors.payload import Payload, tensor_bits
from coders.compressors.sign import pack_signs, unpack_signs

__all__ = ["CompressorHookState", "compressor_hook", "SignVoteHookState", "sign_vote_hook",
           "PowerSGDHookState", "powersgd_hook", "CodedHookState", "coded_hook"]


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


@dataclass
class CodedHookState:
    """State of `coded_hook`: the codec options of `coded-sgd`, error feedback, per-bucket memories.

    `params`: the model's parameters in model order (optional; see module docstring). `seed`
    drives each worker's rounding noise as `coded-sgd`'s does (`sender_seed(seed, rank, bucket)`).
    `bits_up` counts the bytes of this worker's messages (x 8), summed over buckets and steps.
    """

    params: Any = None
    quantizer: str = "uniform"
    scale_mult: float = 0.5
    block_size: int | None = 4096
    levels: int = 16
    bucket_size: int = 512
    model: str = "zi-gennorm"
    coder: str = "ans"
    refresh: str | int = "step"
    error_feedback: bool = True
    fit_sample: int | None = 1 << 17
    seed: int = 0
    process_group: Any = None
    bits_up: int = 0
    memories: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codec = EntropyCodec(self.quantizer, scale_mult=self.scale_mult, block_size=self.block_size,
                                  levels=self.levels, bucket_size=self.bucket_size, model=self.model,
                                  coder=self.coder, refresh=self.refresh, fit_sample=self.fit_sample)
        self.order = None if self.params is None else {id(p): i for i, p in enumerate(self.params)}


def coded_hook(state: CodedHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Mean of the W workers' decoded, entropy-coded quantized buckets (all-gather of their bytes)."""
    comm = DistComm(state.process_group)
    grads = bucket.gradients()  # views into bucket.buffer()
    if state.order is not None:
        index = [state.order[id(p)] for p in bucket.parameters()]
        perm = sorted(range(len(grads)), key=index.__getitem__)
        grads = [grads[i] for i in perm]
        key = ("params", tuple(sorted(index)))
    else:
        key = ("layout", bucket.index(), tuple(tuple(g.shape) for g in grads))
    mem = state.memories.get(key)
    if mem is None:
        mem = state.memories[key] = {
            "sender": state.codec.sender(sender_seed(state.seed, comm.rank, bucket.index())),
            "receivers": [state.codec.receiver() for _ in range(comm.world_size)], "error": None}
    with torch.no_grad():
        p = flatten(grads).float()
        if state.error_feedback and mem["error"] is not None:
            p = p + mem["error"]
        msg, x_hat, _ = state.codec.encode(p, mem["sender"])
        if state.error_feedback:
            mem["error"] = p - x_hat
        state.bits_up += 8 * msg.numel()
        acc = torch.zeros_like(p)
        for r, m in enumerate(comm.all_gather(msg)):
            acc += state.codec.decode(m, mem["receivers"][r], p.shape, p.device)
        mean = acc / comm.world_size
        for g, v in zip(grads, unflatten(mean, grads), strict=True):
            g.copy_(v)
    return _done(bucket.buffer())
