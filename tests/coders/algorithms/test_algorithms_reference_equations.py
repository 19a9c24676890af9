"""The centralized methods against their reference equations (compressors.md), written out by hand."""

from __future__ import annotations

import torch

from coders.algorithms.registry import make_algorithm
from coders.communication.comm import run_threads

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


def test_mcm_memories_and_central_update_follow_the_equations():
    """With quantization on both links (compressors.md sec. 3), at every step k >= 2:
    h = mean_i h_i (server up memory);  C_up(Delta_i) = (h_i' - h_i) / a_up;
    w' = w - lr (mean_i C_up(Delta_i) + h)  (momentum 0);  w_hat_i = H + Omega, H' = H + a_dwn Omega.
    Rand-MCM: the same per worker with its own H_i (and its local models differ)."""
    w, steps, lr = 3, 4, 0.05
    for method in ("mcm", "rand-mcm"):
        def fn(c, method=method):
            params = [p.clone().requires_grad_(True) for p in _init()]
            algo = make_algorithm(method, params, c, levels=2, momentum=0.0)
            log = []
            for t in range(steps):
                for p, g in zip(params, _grads(c.rank, t), strict=True):
                    p.grad = g
                before = ([h.clone() for h in algo.h_own], [h.clone() for h in algo.h],
                          [x.clone() for x in algo.central], [x.clone() for x in algo.H])
                algo.step(lr)
                after = ([h.clone() for h in algo.h_own], [h.clone() for h in algo.h],
                         [x.clone() for x in algo.central], [x.clone() for x in algo.H],
                         [p.detach().clone() for p in params])
                log.append((before, after))
            return log, algo.alpha_up, algo.alpha_down

        res = run_threads(w, fn)
        a_up, a_dn = res[0][1], res[0][2]
        assert all(0 < a < 0.5 for a in a_up + a_dn)
        for t in range(1, steps):
            for k in range(len(SHAPES)):
                h_own_b = [res[i][0][t][0][0][k] for i in range(w)]
                h_own_a = [res[i][0][t][1][0][k] for i in range(w)]
                h_b, h_a = res[0][0][t][0][1][k], res[0][0][t][1][1][k]
                torch.testing.assert_close(h_b, sum(h_own_b) / w, atol=1e-5, rtol=0)
                torch.testing.assert_close(h_a, sum(h_own_a) / w, atol=1e-5, rtol=0)
                msgs = [(a - b) / a_up[k] for a, b in zip(h_own_a, h_own_b, strict=True)]
                g_hat = sum(msgs) / w + h_b
                central_b, central_a = res[0][0][t][0][2][k], res[0][0][t][1][2][k]
                torch.testing.assert_close(central_a, central_b - lr * g_hat, atol=1e-5, rtol=0)
                for i in range(w):
                    big_h_b, big_h_a = res[i][0][t][0][3][k], res[i][0][t][1][3][k]
                    local = res[i][0][t][1][4][k]
                    omega = local - big_h_b
                    torch.testing.assert_close(big_h_a, big_h_b + a_dn[k] * omega, atol=1e-5, rtol=0)
                    # the local model is a quantized (lossy) copy of the central one
                    assert not torch.allclose(local, central_a, atol=1e-6)
        locals_last = [res[i][0][-1][1][4][0] for i in range(w)]
        same = all(torch.equal(locals_last[0], x) for x in locals_last[1:])
        assert same == (method == "mcm")  # one broadcast (MCM) vs N unicasts (Rand-MCM)


def test_error_feedback_conserves_mass_inside_the_algorithms():
    """EF methods (momentum 0, lr 1): x_0 - x_T + mean_i e_i(T) = sum_t mean_i g_i(t) for every tensor,
    i.e. nothing a worker leaves out of its message is lost, and the residual sits before the reduce."""
    w, steps = 3, 5
    for method, opts in [("topk-ef", {"ratio": 0.2}), ("randk-ef", {"ratio": 0.2}),
                         ("qsgd-ef", {"levels": 2, "bucket_size": 8})]:
        def fn(c, method=method, opts=opts):
            params = [p.clone().requires_grad_(True) for p in _init()]
            algo = make_algorithm(method, params, c, momentum=0.0, **opts)
            for t in range(steps):
                for p, g in zip(params, _grads(c.rank, t), strict=True):
                    p.grad = g
                algo.step(1.0)
            return [p.detach().clone() for p in params], [s["error"].clone() for s in algo.states]

        res = run_threads(w, fn)
        x0 = _init()
        for k in range(len(SHAPES)):
            total = sum(_grads(i, t)[k] for i in range(w) for t in range(steps)) / w
            mean_err = sum(res[i][1][k] for i in range(w)) / w
            assert mean_err.abs().sum() > 0  # the operators are lossy: the check is not vacuous
            torch.testing.assert_close(x0[k] - res[0][0][k] + mean_err.view_as(x0[k]), total,
                                       atol=1e-4, rtol=0)


def test_ef_signsgd_rejects_nesterov_with_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="nesterov"):
        run_threads(1, lambda c: make_algorithm("ef-signsgd", [torch.zeros(2, requires_grad=True)], c,
                                                nesterov=True))
    run_threads(1, lambda c: make_algorithm("ef-signsgd", [torch.zeros(2, requires_grad=True)], c,
                                            nesterov=False))


def test_powersgd_matches_the_paper_reducer_written_out():
    """RankKReducer with reuse_query (momentum 0, lr 1): M_i = g_i + e_i;  P = sum_i M_i Q;
    P_hat = orth(P);  Q = (1/W) sum_i M_i^T P_hat;  out = P_hat Q^T;  e_i = M_i - out;  x <- x - out;
    vectors: the plain mean. The first Q is N(0, 1) from the shared seed (`initial_q`)."""
    from coders.compressors.lowrank import initial_q, orthogonalize

    w, steps, r = 3, 3, 2
    got = _run("powersgd", w, steps, 1.0, rank=r, momentum=0.0)
    x = _init()
    mats = [0]  # (6, 5): r (m + n) < m n; the (7,) vector and the 3 x 4 view (r (m + n) = 14) are dense
    err = {(i, k): 0.0 for i in range(w) for k in mats}
    q = {k: initial_q(x[k].reshape(x[k].shape[0], -1).shape[1], r, 0, k, torch.device("cpu"), torch.float32)
         for k in mats}
    for t in range(steps):
        g = [_grads(i, t) for i in range(w)]
        for k in range(len(x)):
            if k not in mats:
                x[k] = x[k] - sum(g[i][k] for i in range(w)) / w
                continue
            m = [g[i][k].reshape(x[k].shape[0], -1) + err[(i, k)] for i in range(w)]
            p_hat = orthogonalize(sum(mi @ q[k] for mi in m))
            q[k] = sum(mi.T @ p_hat for mi in m) / w
            out = p_hat @ q[k].T
            for i in range(w):
                err[(i, k)] = m[i] - out
            x[k] = x[k] - out.reshape(x[k].shape)
    for a, b in zip(got[0], x, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    plain = _init()[0] - sum(_grads(i, t)[0] for i in range(w) for t in range(steps)) / w
    assert not torch.allclose(got[0][0], plain, atol=1e-3)  # the matrix really went through rank r
