"""signSGD with majority vote, Signum, and EF-signSGD.

signSGD-MV / Signum-MV: Bernstein, Zhao, Azizzadenesheli, Anandkumar, "signSGD with Majority
Vote is Communication Efficient and Fault Tolerant", ICLR 2019.
    worker: m <- beta m + (1 - beta) g   (beta = 0: signSGD);  send sign(m), 1 packed bit per entry
    server: v = sign(sum_i sign(m_i));   worker: x <- x - lr (v + lambda x)
Momentum start (`momentum_init`): "zero" (default) is the paper's m_0 = 0, so m_1 = (1 - beta) g_1;
"gradient" is epfml/powersgd's paper code (`train.py`, `optimizer_mom_before_reduce` with
`exponential_moving_average`, the loop that feeds `SignSGDwithMajorityVoteReducer`): m_1 = g_1, then
m <- beta m + (1 - beta) g. Both send sign(g_1) at step 1; they differ from step 2 on.
A zero entry is sent as +1 (one bit carries no zero). With an odd W no vote ties, so v is
+-1 and the downlink is 1 packed bit per entry; with an even W a tie gives v = 0 (no move),
so the downlink is ternary, 2 packed bits per entry (log2 3 ideal, in `extra`). The server
rule runs identically on every rank after an all-gather; bits are counted as PS traffic.

EF-signSGD: Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and other
Gradient Compression Schemes", ICML 2019 (epfml/error-feedback-SGD):
    per tensor: g <- g + lambda x; m <- mu m + g;  p = lr m + e;
    Delta = (||p||_1 / d) sign(p);  e <- p - Delta;  x <- x - mean_i Delta_i
Workers all-gather their scaled signs (d bits + 32 per tensor) and average them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from coders.algorithms.base import Algorithm, StepStats, Timer, gather_payloads
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.packing import flatten, unflatten
from coders.compressors import ErrorFeedback, ScaledSign
from coders.compressors.sign import pack_signs, unpack_signs

__all__ = ["SignumMV", "SignSGDMV", "EFSignSGD", "majority_vote", "vote_downlink_bits"]


def majority_vote(signs: list[Tensor]) -> Tensor:
    """v = sign(sum_i s_i), summed in rank order; 0 where the vote ties."""
    total = torch.zeros_like(signs[0], dtype=torch.float32)
    for s in signs:
        total += s
    return torch.sign(total)


def vote_downlink_bits(d: int, world_size: int) -> tuple[int, float]:
    """(raw, ideal) downlink bits of a d-entry vote: 1 packed bit per entry if W is odd, else ternary."""
    if world_size % 2 == 1:
        return 8 * math.ceil(d / 8), float(d)
    return 8 * math.ceil(2 * d / 8), d * math.log2(3)


@register
class SignumMV(Algorithm):
    """Signum with majority vote (momentum beta before the sign); beta = 0 is signSGD-MV."""

    name = "signum-mv"
    pattern = "ps"
    allreduce_compatible = False
    can_overlap = True  # a vote of per-layer sign messages: fits a bucketed DDP hook (sign_vote_hook)
    optimizer_at = "replicas"
    needs_topology = False
    default_beta = 0.9
    default_lr = 3e-3  # tuned on digits-cnn (sign steps); pass lr= for other workloads

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, beta: float | None = None,
                 momentum_init: str = "zero", **options):
        if momentum_init not in ("zero", "gradient"):
            raise ValueError(f"{self.name}: momentum_init must be 'zero' or 'gradient', "
                             f"got {momentum_init!r}")
        self.momentum_init = momentum_init
        if options.get("momentum"):
            raise ValueError(f"{self.name}: use beta= (momentum before the sign), not momentum=")
        options.pop("momentum", None)
        super().__init__(params, comm, momentum=0.0, **options)
        self.beta = self.default_beta if beta is None else float(beta)
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"{self.name}: beta must be in [0, 1), got {self.beta}")
        self.m: Tensor | None = None

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        grads = self.grads()
        comp, dec = Timer(self.device), Timer(self.device)
        with torch.no_grad():
            with comp:
                g = flatten(grads).float()
                if self.beta == 0.0 or (self.m is None and self.momentum_init == "gradient"):
                    self.m = g.clone()
                else:
                    if self.m is None:
                        self.m = torch.zeros_like(g)
                    self.m.mul_(self.beta).add_(g, alpha=1 - self.beta)
                packed = pack_signs(self.m)
            self.record("compressor_input", self.m)  # outside the codec clock: a copy on recorded steps
            gathered = self.comm.all_gather(packed)
            with dec:
                d = g.numel()
                v = majority_vote([unpack_signs(b, d) for b in gathered])
            self.apply_update(unflatten(v, grads), lr)
        up = packed.numel() * 8
        down, down_ideal = vote_downlink_bits(d, self.world_size)
        return StepStats(float(up), float(down), float(up + down), comp.seconds, dec.seconds,
                         {"bits_down_ideal": down_ideal, "bits_up_ideal": float(d)})


@register
class SignSGDMV(SignumMV):
    """signSGD with majority vote: Signum with beta = 0."""

    name = "signsgd-mv"
    default_beta = 0.0


@register
class EFSignSGD(Algorithm):
    """EF-signSGD: scaled sign of (lr * momentum + residual) per tensor, all-gathered and averaged."""

    name = "ef-signsgd"
    pattern = "allgather"
    allreduce_compatible = False
    can_overlap = True
    optimizer_at = "replicas"
    needs_topology = False
    default_momentum = 0.9

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, momentum: float | None = None,
                 weight_decay: float = 0.0, **options):
        if options.pop("nesterov", None):
            raise ValueError(f"{self.name}: nesterov is not supported (heavy-ball momentum before the "
                             "scaled sign, as epfml/error-feedback-SGD)")
        super().__init__(params, comm, momentum=0.0, nesterov=False, weight_decay=0.0, **options)
        self.mu = self.default_momentum if momentum is None else float(momentum)
        if not 0.0 <= self.mu < 1.0:
            raise ValueError(f"{self.name}: momentum must be in [0, 1), got {self.mu}")
        self.wd = float(weight_decay)
        self.ef = ErrorFeedback(ScaledSign())
        self.states: list[dict] = [{} for _ in self.params]
        self.bufs: list[Tensor | None] = [None for _ in self.params]

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        comp, dec = Timer(self.device), Timer(self.device)
        payloads, inputs = [], []
        with torch.no_grad():
            with comp:
                for i, (p, g) in enumerate(zip(self.params, self.grads(), strict=True)):
                    g = g + self.wd * p if self.wd else g
                    if self.mu:
                        buf = self.bufs[i]
                        self.bufs[i] = g.clone() if buf is None else buf.mul_(self.mu).add_(g)
                        g = self.bufs[i]
                    x, st = lr * g, self.states[i]
                    inputs.append((x, st.get("error")))  # the residual before compress replaces it
                    payloads.append(self.ef.compress(x, st))
            self.record("compressor_input", lambda: [x if e is None else x + e for x, e in inputs])
            gathered = gather_payloads(self.comm, payloads)
            with dec:
                deltas = []
                for layer in range(len(self.params)):
                    acc = torch.zeros_like(self.params[layer], dtype=torch.float32)
                    for rank_payloads in gathered:
                        acc += self.ef.decompress(rank_payloads[layer])
                    deltas.append(acc / self.world_size)
            self.apply_update(deltas, 1.0)  # lr is already inside Delta
        up = sum(p.bits for p in payloads)
        down = up * (self.world_size - 1)
        return StepStats(float(up), float(down), float(down), comp.seconds, dec.seconds)
