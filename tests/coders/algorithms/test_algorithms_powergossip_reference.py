"""PowerGossip step by step against the reference's algorithm (compressors.md sec. 1) written out by hand."""

import torch

from coders.algorithms.gossip import GOSSIP_METHODS as GOSSIP
from coders.algorithms.gossip import PowerGossip
from coders.communication.comm import run_threads
from coders.communication.topology import make_topology
from coders.compressors import orthogonalize

W, STEPS, GAMMA = 4, 5, 0.7


def _worker(c, topo):
    g = torch.Generator().manual_seed(10 + c.rank)
    params = [torch.randn(5, 4, generator=g, dtype=torch.float64),
              torch.randn(3, generator=g, dtype=torch.float64)]
    algo = PowerGossip(params, c, topo, gamma=GAMMA, momentum=0.0)
    factors = {j: (algo.P[j][0].clone(), algo.Q[j][0].clone()) for j in algo.neighbours}
    init = [p.clone() for p in params]
    for _ in range(STEPS):
        for p in params:
            p.grad = torch.zeros_like(p)
        algo.step(0.0)
    return init, factors, [p.clone() for p in params]


def test_powergossip_follows_the_reference_iteration():
    """t = 0: nothing sent. Odd t: u = orth(Q_ij), v = X_i u, D = v_hi - v_lo, P_ij = D, Q_ij = u.
    Even t: u = orth(P_ij), v = X_i^T u, D likewise, Q_ij = D, P_ij = u. Every message is formed from
    X before any update; then X_i += (+1 on the lower rank, -1 on the higher) gamma w_ij P_ij Q_ij^T.
    1-D parameters: exact gossip with gamma = 1."""
    topo = make_topology("ring", W)
    res = run_threads(W, _worker, topo)
    xs = [res[i][0][0].clone() for i in range(W)]
    bs = [res[i][0][1].clone() for i in range(W)]
    fac = {(i, j): list(res[i][1][j]) for i in range(W) for j in res[i][1]}
    # both ends of an edge start from identical factors
    for (i, j), (p, q) in fac.items():
        assert torch.equal(p, fac[(j, i)][0]) and torch.equal(q, fac[(j, i)][1])
    for t in range(STEPS):
        bs = [bs[i] + sum(topo.weight(i, j) * (bs[j] - bs[i]) for j in topo.neighbours(i)) for i in range(W)]
        if t == 0:
            continue
        odd = t % 2 == 1
        sent = {}
        for (i, j), (p, q) in fac.items():
            u = orthogonalize(q if odd else p)
            sent[(i, j)] = (u, xs[i] @ u if odd else xs[i].T @ u)
        new = [x.clone() for x in xs]
        for (i, j), (u, v) in sent.items():
            d = v - sent[(j, i)][1] if i > j else sent[(j, i)][1] - v
            fac[(i, j)] = [d, u] if odd else [u, d]
            sign = -1.0 if i > j else 1.0
            new[i] += sign * GAMMA * topo.weight(i, j) * (fac[(i, j)][0] @ fac[(i, j)][1].T)
        xs = new
    for i in range(W):
        torch.testing.assert_close(res[i][2][0], xs[i], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(res[i][2][1], bs[i], atol=1e-12, rtol=1e-12)
    # the matrices moved towards each other but are not yet equal (rank 1 per step)
    assert not torch.allclose(res[0][2][0], res[1][2][0], atol=1e-3)
    assert not torch.allclose(res[0][2][0], res[0][0][0])


def _run_compressed(method: str, topo, gamma: float):
    def fn(c):
        g = torch.Generator().manual_seed(20 + c.rank)
        params = [torch.randn(4, 3, generator=g), torch.randn(5, generator=g)]
        init = [p.clone() for p in params]
        algo = GOSSIP[method](params, c, topo, gamma=gamma, momentum=0.0)
        for _ in range(STEPS):
            for p in params:
                p.grad = torch.zeros_like(p)
            algo.step(0.0)
        return init, [p.clone() for p in params]

    return run_threads(W, fn)


def _scaled_sign(x: torch.Tensor) -> torch.Tensor:
    return x.abs().mean() * torch.where(x >= 0, 1.0, -1.0)


def test_choco_and_deepsqueeze_follow_the_reference_updates():
    """Choco: q_i = C(x_i - xh_i); xh_i += q_i; s_i += sum_{j in N(i)+i} w_ij q_j; x_i += g (s_i - xh_i).
    DeepSqueeze: v_i = x_i + d_i; d_i = v_i - C(v_i); x_i += g sum_{j != i} w_ij (C(v_j) - C(v_i)).
    C = sign-and-norm, per tensor; x_hat, s, delta start at 0."""
    topo = make_topology("ring", W)
    nb = {i: list(topo.neighbours(i)) for i in range(W)}
    for method, gamma in (("choco-sign", 0.45), ("deepsqueeze", 0.3)):
        res = _run_compressed(method, topo, gamma)
        for k in range(2):
            xs = [res[i][0][k].clone() for i in range(W)]
            a = [torch.zeros_like(xs[0]) for _ in range(W)]  # x_hat (Choco) / delta (DeepSqueeze)
            s = [torch.zeros_like(xs[0]) for _ in range(W)]
            for _ in range(STEPS):
                if method == "choco-sign":
                    q = [_scaled_sign(xs[i] - a[i]) for i in range(W)]
                    for i in range(W):
                        a[i] = a[i] + q[i]
                        s[i] = s[i] + topo.weight(i, i) * q[i] + sum(topo.weight(i, j) * q[j] for j in nb[i])
                    xs = [xs[i] + gamma * (s[i] - a[i]) for i in range(W)]
                else:
                    v = [xs[i] + a[i] for i in range(W)]
                    cv = [_scaled_sign(vi) for vi in v]
                    a = [v[i] - cv[i] for i in range(W)]
                    xs = [xs[i] + gamma * sum(topo.weight(i, j) * (cv[j] - cv[i]) for j in nb[i])
                          for i in range(W)]
            for i in range(W):
                torch.testing.assert_close(res[i][1][k], xs[i], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(res[0][1][k], res[0][0][k])
