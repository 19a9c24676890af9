"""coded-sgd in the simulator: exact decoding on every rank, bits from the bytes, the fine-step limit."""

from __future__ import annotations

import pytest
import torch

from coders.algorithms.registry import make_algorithm, method_class
from coders.communication.comm import run_threads
from coders.runtime.train import train

W = 3


class CountingComm:
    """A Comm that records the bytes each all-gather moves for this rank (and forwards everything)."""

    def __init__(self, comm):
        self.inner, self.rank, self.world_size = comm, comm.rank, comm.world_size
        self.sent: list[int] = []
        self.received: list[int] = []

    def all_gather(self, t):
        assert t.dtype == torch.uint8
        self.sent.append(t.numel())
        out = self.inner.all_gather(t)
        self.received.append(sum(o.numel() for r, o in enumerate(out) if r != self.rank))
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _worker(comm, options, steps=4):
    comm = CountingComm(comm)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(50, 20)), torch.nn.Parameter(torch.randn(20))]
    algo = make_algorithm("coded-sgd", params, comm, **options)
    g = torch.Generator().manual_seed(10 + comm.rank)
    rows = []
    for _ in range(steps):
        grads = [torch.randn(p.shape, generator=g) * torch.rand(p.shape, generator=g) ** 3 for p in params]
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr.clone()
        before = [p.detach().clone() for p in params]
        s = algo.step(0.0)  # lr 0: the update alone is checked below, the model stays put
        assert all(torch.equal(a, p) for a, p in zip(before, params, strict=True))
        rows.append({"stats": s, "x_hat": algo.x_hat.clone(), "decoded": [d.clone() for d in algo.decoded],
                     "grad": torch.cat([gr.reshape(-1) for gr in grads]), "error": algo.error})
    return {"rows": rows, "sent": comm.sent, "received": comm.received}


@pytest.mark.parametrize("options", [
    {},
    {"quantizer": "stochastic", "model": "zi-gennorm", "coder": "huffman", "block_size": None},
    {"quantizer": "qsgd", "model": "histogram", "refresh": 3, "error_feedback": False},
    {"model": "laplace", "refresh": "once"},
], ids=["uniform-ef", "stochastic", "qsgd-refresh3", "once"])
def test_every_rank_decodes_every_senders_quantized_gradient_exactly(options):
    out = run_threads(W, _worker, options)
    for step in range(4):
        for r in range(W):
            for sender in range(W):
                got = out[r]["rows"][step]["decoded"][sender]
                assert torch.equal(got, out[sender]["rows"][step]["x_hat"])


def test_bits_per_step_are_eight_times_the_bytes_sent():
    out = run_threads(W, _worker, {"refresh": 2})
    for r in range(W):
        for step, row in enumerate(out[r]["rows"]):
            s = row["stats"]
            assert s.bits_up == 8 * out[r]["sent"][step]
            assert s.bits_down == s.bits_wire == 8 * out[r]["received"][step]
            assert s.extra["model_sent"] == (step % 2 == 0)
        # the message shrinks on the steps that reuse the model (no side information)
        side = [row["stats"].extra["bits_up_side"] for row in out[r]["rows"]]
        assert side[1] < side[0] and side[3] < side[2]


def test_error_feedback_conserves_mass():
    """sum_t x_hat_t + e_T = sum_t g_t on every worker (EF: nothing is lost, only delayed)."""
    out = run_threads(W, _worker, {"scale_mult": 2.0})
    for r in range(W):
        rows = out[r]["rows"]
        sent = sum(row["x_hat"] for row in rows)
        total = sum(row["grad"] for row in rows)
        torch.testing.assert_close(sent + rows[-1]["error"], total, atol=1e-5, rtol=0)


def _one_step(comm, scale_mult):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(3000))
    g = torch.Generator().manual_seed(comm.rank)
    p.grad = torch.randn(3000, generator=g) * torch.rand(3000, generator=g)
    grad = p.grad.clone()
    algo = make_algorithm("coded-sgd", [p], comm, scale_mult=scale_mult, block_size=None,
                          error_feedback=False, momentum=0.0)
    algo.step(1.0)
    return grad, -p.detach().clone(), algo.sender.quantizer


def test_one_step_update_is_the_mean_gradient_to_half_a_step():
    out = run_threads(W, _one_step, 1e-3)
    mean = sum(o[0] for o in out) / W
    rms = [float(o[0].pow(2).mean().sqrt()) for o in out]
    half_step = max(1e-3 * r for r in rms) / 2
    for _, update, _ in out:
        err = float((update - mean).abs().max())
        assert 0 < err <= half_step * (1 + 1e-4)


def test_very_fine_step_trains_like_bf16_to_the_quantizers_error():
    """At c = 1e-3 the coded run stays as close to fp32 training as bf16's rounding does."""
    kw = {"workers": 2, "steps": 20, "eval_every": 20}
    fp32 = train("digits-cnn", "fp32", **kw)
    bf16 = train("digits-cnn", "bf16", **kw)
    fine = train("digits-cnn", "coded-sgd", options={"scale_mult": 1e-3, "block_size": None,
                                                     "error_feedback": False}, **kw)
    ref = fp32.final_params[0]
    dist = {name: float((r.final_params[0] - ref).norm() / ref.norm()) for name, r in
            (("bf16", bf16), ("coded", fine))}
    assert 0 < dist["coded"] <= 2 * dist["bf16"]
    losses = [torch.tensor(r.history["loss"].values) for r in (fine, bf16)]
    torch.testing.assert_close(*losses, rtol=1e-4, atol=0)
    assert fine.history["bits_up"].gt(0).all()


def test_registered_with_its_facts():
    cls = method_class("coded-sgd")
    assert (cls.pattern, cls.allreduce_compatible, cls.can_overlap, cls.optimizer_at) == (
        "allgather", False, True, "replicas")


@pytest.mark.cuda
@pytest.mark.parametrize("quantizer", ["uniform", "stochastic", "qsgd"])
def test_cuda_messages_decode_on_the_device(quantizer):
    from coders.compressors.entropy_coded import EntropyCodec

    x = torch.randn(5000, device="cuda") * 1e-3
    codec = EntropyCodec(quantizer, block_size=None if quantizer == "qsgd" else 1024)
    msg, x_hat, _ = codec.encode(x, codec.sender(0))
    assert msg.device.type == x_hat.device.type == "cuda"
    out = codec.decode(msg, codec.receiver(), x.shape, x.device)
    assert out.device.type == "cuda" and torch.equal(out, x_hat)
    # the same bytes as on the CPU for deterministic rounding (the step is computed the same way)
    if quantizer == "uniform":
        cpu_msg, _, _ = codec.encode(x.cpu(), codec.sender(0))
        assert torch.equal(cpu_msg, msg.cpu())
