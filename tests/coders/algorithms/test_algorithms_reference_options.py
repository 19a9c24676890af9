"""The reference codes' own rules, offered as options (issue 15 item 10), against those rules written out."""

from __future__ import annotations

import copy

import pytest
import torch
from test_algorithms_reference_equations import _grads, _init, _run

from coders.algorithms.registry import make_algorithm
from coders.communication.comm import run_threads


def test_signum_momentum_init_gradient_is_epfml_m1_equals_g1():
    """epfml/powersgd paper code: m_1 = g_1, then m <- b m + (1 - b) g; v = sign(sum_i sign(m_i))."""
    w, steps, lr, beta = 3, 4, 0.01, 0.9
    got = _run("signum-mv", w, steps, lr, beta=beta, momentum_init="gradient")
    x = _init()
    m = [[None] * len(x) for _ in range(w)]
    for t in range(steps):
        for i in range(w):
            for k, g in enumerate(_grads(i, t)):
                m[i][k] = g.clone() if t == 0 else beta * m[i][k] + (1 - beta) * g
        for k in range(len(x)):
            v = torch.sign(sum(torch.where(m[i][k] >= 0, 1.0, -1.0) for i in range(w)))
            x[k] = x[k] - lr * v
    for a, b in zip(got[0], x, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # the default (the paper's m_0 = 0) is a different rule on these numbers
    default = _run("signum-mv", w, steps, lr, beta=beta)
    assert not all(torch.equal(a, b) for a, b in zip(default[0], got[0], strict=True))


def test_mcm_down_memory_from_the_first_server_model():
    """Authors' Train.py: H is created at the first downlink as a copy of the server model after its
    first update (H_1 = w_1), so Omega_1 = 0 and w_hat_1 = w_1; then w_hat = H + C(w - H), H += a Omega."""
    w, lr = 2, 0.05

    def fn(c):
        params = [p.clone() for p in _init()]
        algo = make_algorithm("mcm", params, c, levels=4, down_memory_init="first_server_model")
        out = []
        for t in range(3):
            for p, g in zip(params, _grads(c.rank, t), strict=True):
                p.grad = g
            before = (copy.deepcopy(algo.down), copy.deepcopy(algo.down_states), [h.clone() for h in algo.H])
            algo.step(lr)
            out.append((before, [p.detach().clone() for p in params], [x.clone() for x in algo.central],
                        [h.clone() for h in algo.H], list(algo.alpha_down)))
        return out

    for rank_out in run_threads(w, fn):
        (_, x1, w1, h1, _) = rank_out[0]
        for a, b, h in zip(x1, w1, h1, strict=True):
            assert torch.equal(a, b) and torch.equal(h, b)  # Omega_1 = C(0) = 0: the workers get w_1
        for t in (1, 2):
            (downs, states, h_prev), x_t, w_t, h_t, alpha = rank_out[t]
            for k in range(len(x_t)):
                omega = downs[k].decompress(downs[k].compress(w_t[k] - h_prev[k], states[k])).float()
                torch.testing.assert_close(x_t[k], h_prev[k] + omega, atol=0, rtol=0)
                torch.testing.assert_close(h_t[k], h_prev[k] + alpha[k] * omega, atol=0, rtol=0)
    # the default H_0 = w_0 compresses w_1 - w_0 at the first step: the workers do not get w_1 exactly
    default = run_threads(w, lambda c: _mcm_first_step(c))
    assert not all(torch.equal(a, b) for a, b in zip(*default[0], strict=True))


def _mcm_first_step(c):
    params = [p.clone() for p in _init()]
    algo = make_algorithm("mcm", params, c, levels=4)
    for p, g in zip(params, _grads(c.rank, 0), strict=True):
        p.grad = g
    algo.step(0.05)
    return [p.detach().clone() for p in params], [x.clone() for x in algo.central]


def test_reference_options_reject_unknown_rules():
    with pytest.raises(ValueError, match="momentum_init"):
        _run("signum-mv", 1, 1, 0.01, momentum_init="ones")
    with pytest.raises(ValueError, match="down_memory_init"):
        _run("mcm", 1, 1, 0.01, down_memory_init="w0")
