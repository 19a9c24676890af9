"""MCM and Rand-MCM: bidirectional compression with memories on both links.

Philippenko and Dieuleveut, "Preserved central model for faster bidirectional compression
in distributed settings", NeurIPS 2021 (philipco/mcm-bidirectional-compression):
    worker i: g_i = grad f_i(w_hat_i);  Delta_i = g_i - h_i;  send C_up(Delta_i);  h_i += a_up C_up(Delta_i)
    server:   g_hat = (1/N) sum_i C_up(Delta_i) + h;  h += a_up (1/N) sum_i C_up(Delta_i)
              v = beta v + g_hat;  w <- w - lr v          (w: the central model, never compressed)
              Omega = C_dwn(w - H);  broadcast Omega
    all:      w_hat = H + Omega;  H += a_dwn Omega
Momentum is the server's (v above, the paper's algorithm); the reference's deep-learning code
(`OptimizerSGD.py`) applies it on each worker instead. Weight decay also acts on the central model.
Gradients are computed on the perturbed local model w_hat_i (the worker's parameters); the
central model w is what `eval_params()` returns. Memory rates a = 1 / (2 (omega + 1)) per
layer, with omega = min(d / s^2, sqrt(d) / s) for s-level quantization of a d-entry layer
(one norm per layer, the paper's `SQuantization`); identity compressors have omega = 0.
Initialization: H_0 = w_0 (`down_memory_init="initial_model"`, the default: the paper's H_0); the
authors' deep-learning code (`Train.py`, `__compress_model_and_combine_with_down_memory__`) creates H
lazily at the first downlink as a copy of the server model after its first update, H_1 = w_1, so the
first message Omega_1 = C_dwn(w_1 - H_1) = 0 and the workers start from w_1 exactly
(`down_memory_init="first_server_model"`). h_i = the first gradient (so Delta = 0 at k = 1), which costs one
uncompressed exchange at the first step (counted: 32 bits per entry up).
Default s = 16 levels on both links (the reference's CIFAR-10 setting). The reference's MNIST
setting, s = 4, does not learn on digits-cnn: with one norm per layer the 32768-entry fc1 gets
omega = sqrt(d)/s = 45 (alpha = 0.011), so the downlink perturbation C_dwn(w - H) of the local
models is ~7 ||w - H|| and training collapses to chance after ~50 steps (4 workers, lr 0.05,
momentum 0.9); at s = 16 (omega = 11) it reaches ~0.98 in 150 steps. Learning rate: the
workload's (0.05 on digits; the reference's 0.1 with momentum 0.9 also learns, ~0.96).
`entropy_coder="ans"` adds the entropy-coded uplink size (`extra["bits_up_coded"]`).
Rand-MCM (`randomized=True`): one down memory H_i per worker and independent messages
Omega_i = C_dwn^i(w - H_i), so the downlink is N unicasts. The server rule runs identically on
every rank after an all-gather (shared seed for the MCM downlink); bits are PS traffic.
With identity compressors MCM is exactly SGD (tested).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from coders.algorithms.base import Algorithm, StepStats, Timer, gather_payloads
from coders.algorithms.registry import register
from coders.communication.comm import Comm
from coders.communication.packing import flatten, unflatten
from coders.compressors import QSGD, Compressor, Identity, qsgd_omega
from coders.compressors.coded import entropy_coded_bits
from coders.compressors.sparse import shared_seed
from coders.wire import FLOAT32_BITS

__all__ = ["MCM", "RandMCM", "memory_rate"]


def memory_rate(omega: float) -> float:
    """alpha = 1 / (2 (omega + 1))."""
    if omega < 0:
        raise ValueError(f"memory_rate: omega must be >= 0, got {omega}")
    return 1.0 / (2.0 * (omega + 1.0))


_UP, _DOWN = 1, 2


def _roundtrip(c: Compressor, x: Tensor, state: dict) -> tuple[Tensor, int]:
    """(C(x) in float32, wire bits of the message)."""
    if hasattr(c, "roundtrip"):
        out, bits = c.roundtrip(x, state)
        return out.float(), bits
    payload = c.compress(x, state)
    return c.decompress(payload).float(), payload.bits


def _decode_all(c: Compressor, payloads: list) -> Tensor:
    """The decoded messages of all workers as rows of a (W, d) float32 tensor."""
    if hasattr(c, "decompress_many"):
        return c.decompress_many(payloads).float()
    return torch.stack([c.decompress(p).reshape(-1).float() for p in payloads])


@register
class MCM(Algorithm):
    """MCM (one worker's view, with the server replicated on every rank)."""

    name = "mcm"
    pattern = "ps"
    allreduce_compatible = False
    can_overlap = False  # the next forward needs the broadcast model; the server needs every uplink first
    optimizer_at = "server"
    needs_topology = False
    default_momentum = 0.9
    randomized = False

    def __init__(self, params: Iterable[Tensor], comm: Comm, *, compressor: str = "qsgd", levels: int = 16,
                 up_levels: int | None = None, down_levels: int | None = None,
                 alpha_up: float | None = None, alpha_down: float | None = None,
                 init_memory: str = "gradient", down_memory_init: str = "initial_model",
                 entropy_coder: str | None = None, **options):
        super().__init__(params, comm, **options)
        if down_memory_init not in ("initial_model", "first_server_model"):
            raise ValueError(f"{self.name}: down_memory_init must be 'initial_model' or "
                             f"'first_server_model', got {down_memory_init!r}")
        self.down_memory_init = down_memory_init
        self.entropy_coder = entropy_coder
        if compressor not in ("qsgd", "identity"):
            raise ValueError(f"{self.name}: compressor must be 'qsgd' or 'identity', got {compressor!r}")
        if init_memory not in ("gradient", "zero"):
            raise ValueError(f"{self.name}: init_memory must be 'gradient' or 'zero', got {init_memory!r}")
        self.kind = compressor
        self.s_up = int(up_levels or levels)
        self.s_down = int(down_levels or levels)
        if min(self.s_up, self.s_down) < 1:
            raise ValueError(f"{self.name}: levels must be >= 1")
        self.init_memory = init_memory
        n = len(self.params)
        # the server's optimizer acts on the central model, not on the workers' perturbed models
        self.central = [p.detach().clone() for p in self.params]
        opt = self.optimizer.defaults
        self.server_opt = torch.optim.SGD(self.central, lr=0.0, momentum=opt["momentum"],
                                          nesterov=opt["nesterov"], weight_decay=opt["weight_decay"])
        self.H = [p.detach().clone().float() for p in self.params]
        self.h_own = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        self.h = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        self.up = [self._compressor(layer, self.s_up, shared_seed(self.seed, 1000 * self.rank + layer, _UP))
                   for layer in range(n)]
        down_stream = 1000 * self.rank if self.randomized else 0
        self.down = [self._compressor(layer, self.s_down, shared_seed(self.seed, down_stream + layer, _DOWN))
                     for layer in range(n)]
        self.up_states = [{} for _ in range(n)]
        self.down_states = [{} for _ in range(n)]
        self.alpha_up = [alpha_up if alpha_up is not None else memory_rate(self._omega(p, self.s_up))
                         for p in self.params]
        self.alpha_down = [alpha_down if alpha_down is not None else memory_rate(self._omega(p, self.s_down))
                           for p in self.params]

    def _compressor(self, layer: int, levels: int, seed: int) -> Compressor:
        return Identity() if self.kind == "identity" else QSGD(levels, bucket_size=None, seed=seed)

    def _omega(self, p: Tensor, levels: int) -> float:
        return 0.0 if self.kind == "identity" else qsgd_omega(p.numel(), levels)

    def eval_params(self) -> list[Tensor]:
        """The central model w (the server's, identical on every rank)."""
        return self.central

    def step(self, lr: float) -> StepStats:
        self._check_lr(lr)
        grads = [g.float() for g in self.grads()]
        w = self.world_size
        comp, dec = Timer(self.device), Timer(self.device)
        coded_up = None
        with torch.no_grad():
            if self.t == 0 and self.init_memory == "gradient":
                flat = flatten(grads)
                mean = unflatten(self.comm.all_reduce(flat) / w, grads)
                for i, g in enumerate(grads):
                    self.h_own[i] = g.clone()
                    self.h[i] = mean[i].clone()
                g_hat = [m.clone() for m in mean]
                up = float(FLOAT32_BITS * flat.numel())
            else:
                self.record("compressor_input", lambda: [g - h for g, h in zip(grads, self.h_own, strict=True)
                                                         ])
                with comp:
                    payloads = [c.compress(g - h, s) for c, g, h, s in
                                zip(self.up, grads, self.h_own, self.up_states, strict=True)]
                gathered = gather_payloads(self.comm, payloads)
                with dec:
                    g_hat = []
                    for i, c in enumerate(self.up):
                        # every worker's message of this layer decoded in one batched op: (W, d)
                        msgs = _decode_all(c, [rank_payloads[i] for rank_payloads in gathered])
                        self.h_own[i] += self.alpha_up[i] * msgs[self.rank].view_as(self.h_own[i])
                        acc = (msgs.sum(dim=0) / w).view_as(grads[i])
                        g_hat.append(acc + self.h[i])
                        self.h[i] += self.alpha_up[i] * acc
                up = float(sum(p.bits for p in payloads))
                if self.entropy_coder:
                    coded_up = float(sum(entropy_coded_bits(c, p, self.entropy_coder)
                                         for c, p in zip(self.up, payloads, strict=True)))
            # server: SGD (momentum, weight decay) on the central model
            for c, g in zip(self.central, g_hat, strict=True):
                c.grad = g.to(c.dtype)
            for group in self.server_opt.param_groups:
                group["lr"] = lr
            self.server_opt.step()
            # downlink: Omega = C_dwn(w - H); every worker: w_hat = H + Omega, H += a_dwn Omega
            down = 0.0
            if self.t == 0 and self.down_memory_init == "first_server_model":
                self.H = [c.detach().clone().float() for c in self.central]
            for i, (p, c) in enumerate(zip(self.params, self.down, strict=True)):
                diff = self.central[i].float() - self.H[i]
                self.record("downlink_input", {i: diff})
                with comp:  # decoded where it is made: no packing (same values and bits)
                    omega, bits = _roundtrip(c, diff, self.down_states[i])
                down += bits
                p.copy_((self.H[i] + omega).to(p.dtype))
                self.H[i] += self.alpha_down[i] * omega
        self.t += 1
        extra = {"alpha_up_mean": sum(self.alpha_up) / len(self.alpha_up),
                 "alpha_down_mean": sum(self.alpha_down) / len(self.alpha_down)}
        if self.entropy_coder:
            extra["bits_up_coded"] = up if coded_up is None else coded_up
        return StepStats(up, down, up + down, comp.seconds, dec.seconds, extra)


@register
class RandMCM(MCM):
    """Rand-MCM: a down memory per worker and independent downlink messages (N unicasts)."""

    name = "rand-mcm"
    randomized = True
