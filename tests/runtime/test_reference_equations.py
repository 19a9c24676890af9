"""The centralized methods against their reference equations (compressors.md), written out by hand."""

from __future__ import annotations

import torch

from coders.algorithms.registry import make_algorithm
from coders.runtime.comm import run_threads

SHAPES = ((6, 5), (7,), (3, 2, 2))


def _init():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*s, generator=g) for s in SHAPES]


def _grads(rank: int, step: int):
    g = torch.Generator().manual_seed(500 + 31 * rank + 7 * step)
    return [torch.randn(*s, generator=g) for s in SHAPES]


def _run(method: str, w: int, steps: int, lr: float, **opts):
    def fn(c):
        params = [p.clone().requires_grad_(True) for p in _init()]
        algo = make_algorithm(method, params, c, **opts)
        for t in range(steps):
            for p, g in zip(params, _grads(c.rank, t), strict=True):
                p.grad = g
            algo.step(lr)
        return [p.detach().clone() for p in params]

    return run_threads(w, fn)


def test_signum_momentum_before_the_sign_and_weight_decay_after_the_vote():
    """m_i <- b m_i + (1 - b) g_i;  v = sign(sum_i sign(m_i));  x <- x - lr (v + wd x)."""
    w, steps, lr, beta, wd = 3, 4, 0.01, 0.9, 0.1
    got = _run("signum-mv", w, steps, lr, beta=beta, weight_decay=wd)
    x = _init()
    m = [[torch.zeros_like(p) for p in x] for _ in range(w)]
    for t in range(steps):
        for i in range(w):
            for k, g in enumerate(_grads(i, t)):
                m[i][k] = beta * m[i][k] + (1 - beta) * g
        for k in range(len(x)):
            v = torch.sign(sum(torch.where(m[i][k] >= 0, 1.0, -1.0) for i in range(w)))
            x[k] = x[k] - lr * (v + wd * x[k])
    for a, b in zip(got[0], x, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_ef_signsgd_matches_the_reference_update():
    """Per tensor: g + wd x -> momentum buffer (torch SGD style) -> p = lr m + e;
    Delta = (||p||_1 / d) sign(p);  e <- p - Delta;  x <- x - mean_i Delta_i."""
    w, steps, lr, mu, wd = 2, 4, 0.05, 0.9, 0.01
    got = _run("ef-signsgd", w, steps, lr, momentum=mu, weight_decay=wd)
    x = _init()
    buf = [[None] * len(x) for _ in range(w)]
    err = [[torch.zeros_like(p) for p in x] for _ in range(w)]
    for t in range(steps):
        deltas = [[None] * len(x) for _ in range(w)]
        for i in range(w):
            for k, g in enumerate(_grads(i, t)):
                g = g + wd * x[k]
                buf[i][k] = g.clone() if buf[i][k] is None else mu * buf[i][k] + g
                p = lr * buf[i][k] + err[i][k]
                delta = p.abs().mean() * torch.sign(p)
                err[i][k] = p - delta
                deltas[i][k] = delta
        for k in range(len(x)):
            x[k] = x[k] - sum(deltas[i][k] for i in range(w)) / w
    for a, b in zip(got[0], x, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_s3gd_residual_accumulation_and_sparse_vote():
    """a <- beta a + g;  S = top-K |a| per layer (K = ceil(sparsity N));  s = sign(a) 1_S;  a[S] <- 0;
    v = sign(sum_m s_m);  x <- x - lr v."""
    w, steps, lr, sparsity, beta = 3, 5, 0.01, 0.25, 1.0
    got = _run("s3gd-mv", w, steps, lr, sparsity=sparsity, accum_weight=beta)
    x = _init()
    acc = [[torch.zeros(p.numel()) for p in x] for _ in range(w)]
    for t in range(steps):
        total = [torch.zeros(p.numel()) for p in x]
        for i in range(w):
            for k, g in enumerate(_grads(i, t)):
                a = acc[i][k]
                a.mul_(beta).add_(g.reshape(-1))
                kk = -(-int(sparsity * 1000) * a.numel() // 1000)
                idx = torch.topk(a.abs(), kk).indices
                total[k][idx] += torch.sign(a[idx])
                a[idx] = 0.0
        for k in range(len(x)):
            x[k] = x[k] - lr * torch.sign(total[k]).view_as(x[k])
    for a, b in zip(got[0], x, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
