"""Gossip methods on synthetic parameters in the thread simulator: invariants and reductions.

Each worker holds a few tensors (conv-like 4-D, matrices, a bias) with a rank-dependent random
init; `p.grad` is zero unless stated, so `step` is pure gossip (the momentum buffer stays 0).
"""

import numpy as np
import pytest
import torch

from coders.algorithms.gossip import (
    DPSGD,
    GOSSIP_METHODS,
    ChocoSGD,
    PowerGossip,
    consensus_distance,
    pair_seed,
)
from coders.communication.comm import run_threads
from coders.communication.topology import fully_connected, make_topology, ring, star, torus, watts_strogatz
from coders.compressors import Identity

SHAPES = [(6, 4), (5, 3, 2, 2), (7,), (3, 9)]
SQUARE = [(4, 4), (3, 3), (2, 1, 2), (5,)]  # (2, 1, 2) is viewed as a 2 x 2 matrix


def make_params(rank, shapes=SHAPES, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(1000 * seed + rank)
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


def run(world, method_cls, steps, topo=None, shapes=SHAPES, dtype=torch.float64, grad=None, lr=0.0,
        record=False, device="cpu", **options):
    """Run `steps` of a method on `world` workers; return each rank's params (and per-step stats)."""
    topo = topo or ring(world)

    def worker(comm):
        params = [p.to(device) for p in make_params(comm.rank, shapes, dtype)]
        algo = method_cls(params, comm, topology=topo, **options)
        stats, snaps = [], []
        for t in range(steps):
            for p in params:
                p.grad = torch.zeros_like(p) if grad is None else grad(comm.rank, t, p)
            stats.append(algo.step(lr))
            if record:
                snaps.append([p.clone() for p in params])
        return {"params": params, "stats": stats, "snaps": snaps, "algo": algo,
                "dist": consensus_distance(params, comm)}

    return run_threads(world, worker)


def total(results, k):
    return sum(r["params"][k] for r in results)


def initial_total(world, k, shapes=SHAPES, dtype=torch.float64):
    return sum(make_params(r, shapes, dtype)[k] for r in range(world))


@pytest.mark.parametrize("method", sorted(GOSSIP_METHODS))
def test_every_method_preserves_the_network_sum(method):
    world = 6
    res = run(world, GOSSIP_METHODS[method], steps=7)
    for k in range(len(SHAPES)):
        np.testing.assert_allclose(total(res, k), initial_total(world, k), rtol=0, atol=1e-11)


@pytest.mark.parametrize("topo", [star(5), watts_strogatz(8), fully_connected(4)], ids=lambda t: t.name)
@pytest.mark.parametrize("method", ["powergossip", "choco-sign", "deepsqueeze"])
def test_sum_is_preserved_on_irregular_graphs(method, topo):
    res = run(topo.workers, GOSSIP_METHODS[method], steps=5, topo=topo)
    for k in range(len(SHAPES)):
        np.testing.assert_allclose(total(res, k), initial_total(topo.workers, k), rtol=0, atol=1e-11)
    assert res[0]["dist"] < run(topo.workers, GOSSIP_METHODS[method], steps=1, topo=topo)[0]["dist"]


def test_powergossip_preserves_the_sum_to_float32_precision_with_gradients():
    """Sum after = sum before - lr * sum of local SGD updates (momentum 0, so the update is the gradient)."""
    world, steps, lr = 8, 12, 0.1

    def grad(rank, t, p):
        g = torch.Generator().manual_seed(10_000 + 100 * rank + t)
        return torch.randn(p.shape, generator=g, dtype=p.dtype)

    res = run(world, PowerGossip, steps, topo=torus(8), dtype=torch.float32, grad=grad, lr=lr, momentum=0.0,
              rank=2, num_iterations=2)
    for k, shape in enumerate(SHAPES):
        applied = sum(grad(r, t, torch.empty(shape)) for r in range(world) for t in range(steps))
        expected = initial_total(world, k, dtype=torch.float32) - lr * applied
        scale = float(expected.abs().max())
        np.testing.assert_allclose(total(res, k), expected, rtol=0, atol=2e-6 * scale * steps)


def test_powergossip_edge_factors_are_bit_identical_on_both_ends():
    res = run(5, PowerGossip, steps=4, dtype=torch.float32, rank=2)
    for i in range(5):
        for j in res[i]["algo"].neighbours:
            a_i, a_j = res[i]["algo"], res[j]["algo"]
            for a, b in zip(a_i.P[j] + a_i.Q[j], a_j.P[i] + a_j.Q[i], strict=True):
                assert torch.equal(a, b)
    assert pair_seed(3, 1, 4) == pair_seed(3, 4, 1) != pair_seed(3, 1, 5)


@pytest.mark.parametrize("method, options, factor", [
    ("dpsgd", {}, 1e-12),
    ("powergossip", {}, 1e-4),
    ("powergossip", {"warm_start": False, "rank": 2}, 1e-5),
    ("choco-topk", {"ratio": 0.3, "gamma": 0.3}, 1e-6),
    ("choco-sign", {}, 1e-3),
    ("choco-randk", {"ratio": 0.5, "gamma": 0.3}, 1e-6),
    ("choco-lowrank", {"rank": 1, "gamma": 0.3}, 1e-6),
    ("deepsqueeze", {"gamma": 0.1}, 5e-2),  # error-compensated sign: slower, but still contracting
])
def test_consensus_distance_decays_to_zero_without_gradients(method, options, factor):
    world, steps = 6, 80

    def worker(comm):
        params = make_params(comm.rank, dtype=torch.float64)
        start = consensus_distance(params, comm)
        algo = GOSSIP_METHODS[method](params, comm, topology=ring(world), **options)
        for p in params:
            p.grad = torch.zeros_like(p)
        trace = []
        for _ in range(steps):
            algo.step(0.0)
            trace.append(consensus_distance(params, comm))
        return start, trace

    start, trace = run_threads(world, worker)[0]
    assert start > 10
    assert trace[-1] < factor * start
    assert trace[-1] < trace[steps // 2]  # still decreasing in the second half


@pytest.mark.parametrize("gamma", [1.0, 0.7])
def test_choco_with_identity_compressor_is_exact_gossip(gamma):
    world, steps = 6, 5
    exact = run(world, DPSGD, steps, gamma=gamma, record=True)
    choco = run(world, ChocoSGD, steps, gamma=gamma, compressor=Identity(), record=True)
    for r in range(world):
        for t in range(steps):
            for a, b in zip(exact[r]["snaps"][t], choco[r]["snaps"][t], strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("topo_name", ["ring", "torus"])
def test_full_rank_powergossip_is_exact_gossip_on_square_matrices(topo_name):
    """r = m = n: P and Q are orthogonal, P Q^T = X_hi - X_lo, so each step is x <- x + gamma (W - I) x.

    PowerGossip skips its very first step (t = 0, models agree after a common init), so its
    step t + 1 equals D-PSGD's step t.
    """
    world, steps = 8, 6
    topo = make_topology(topo_name, world)
    exact = run(world, DPSGD, steps, topo=topo, shapes=SQUARE, gamma=1.3, record=True)
    power = run(world, PowerGossip, steps + 1, topo=topo, shapes=SQUARE, gamma=1.3, rank=4, eps=1e-30,
                record=True)
    for r in range(world):
        for k in (0, 1, 2):  # matrices: compressed path
            for t in range(steps):
                torch.testing.assert_close(power[r]["snaps"][t + 1][k], exact[r]["snaps"][t][k], rtol=0,
                                           atol=1e-10)
        torch.testing.assert_close(power[r]["snaps"][0][0], make_params(r, SQUARE)[0], rtol=0, atol=0)


def test_powergossip_bits_per_neighbour_alternate_between_m_and_n():
    world = 4
    res = run(world, PowerGossip, steps=4, dtype=torch.float32, rank=1)
    dense = 7 * 32
    m_side = (6 + 5 + 3) * 32  # X u, one column per matrix (m = 6, 5, 3)
    n_side = (4 + 12 + 9) * 32  # X^T u (n = 4, 3*2*2, 9)
    expected = [dense, dense + m_side, dense + n_side, dense + m_side]
    for r in range(world):
        for t, st in enumerate(res[r]["stats"]):
            per = st.extra["bits_per_neighbour"]
            assert sorted(per) == ring(world).neighbours(r)
            assert set(per.values()) == {expected[t]}
            assert st.bits_up == 2 * expected[t]


def test_bits_of_dpsgd_and_choco_topk():
    world = 4
    d = sum(int(np.prod(s)) for s in SHAPES)
    st = run(world, DPSGD, steps=1, dtype=torch.float32)[0]["stats"][0]
    assert st.extra["bits_per_neighbour"] == {1: 32 * d, 3: 32 * d}
    st = run(world, GOSSIP_METHODS["choco-topk"], steps=1, dtype=torch.float32, ratio=0.25)[0]["stats"][0]
    kept = sum(int(np.ceil(0.25 * np.prod(s))) for s in SHAPES)
    assert st.extra["bits_per_neighbour"] == {1: 64 * kept, 3: 64 * kept}  # fp32 value + int32 index
    st = run(world, GOSSIP_METHODS["choco-sign"], steps=1, dtype=torch.float32)[0]["stats"][0]
    sign_bits = sum(8 * int(np.ceil(np.prod(s) / 8)) + 32 for s in SHAPES)
    assert st.bits_up == 2 * sign_bits


def test_bad_options_raise():
    topo = ring(1)

    def worker(comm):
        params = make_params(0)
        with pytest.raises(ValueError, match="needs a topology"):
            DPSGD(params, comm)
        with pytest.raises(ValueError, match="has 4 workers"):
            DPSGD(params, comm, topology=ring(4))
        with pytest.raises(ValueError, match="rank must be a positive integer"):
            PowerGossip(params, comm, topology=topo, rank=0)
        with pytest.raises(ValueError, match="gamma"):
            DPSGD(params, comm, topology=topo, gamma=-1.0)
        with pytest.raises(ValueError, match="either compressor"):
            ChocoSGD(params, comm, topology=topo, compressor=Identity(), ratio=0.1)
        with pytest.raises(ValueError, match="lr"):
            DPSGD(params, comm, topology=topo).step(float("nan"))
        with pytest.raises(TypeError):
            DPSGD(params, comm, topology=topo, bogus=1)
        return True

    assert run_threads(1, worker) == [True]


def test_default_gamma_is_the_optimal_over_relaxed_step_for_exact_and_power_gossip():
    def worker(comm):
        params = make_params(comm.rank)
        out = {name: GOSSIP_METHODS[name](params, comm, topology=ring(8)).gamma for name in GOSSIP_METHODS}
        with pytest.raises(ValueError, match="'optimal'"):
            DPSGD(params, comm, topology=ring(8), gamma="best")
        return out

    gammas = run_threads(8, worker)[0]
    assert gammas["dpsgd"] == gammas["powergossip"] == pytest.approx(2 / (0.1952621 + 4 / 3), abs=1e-6)
    assert gammas["choco-sign"] == 0.45 and gammas["choco-topk"] == 0.0375 and gammas["deepsqueeze"] == 0.01


def test_registry_names_and_interface():
    assert set(GOSSIP_METHODS) == {"dpsgd", "powergossip", "choco-topk", "choco-randk", "choco-sign",
                                   "choco-lowrank", "deepsqueeze"}
    for name, cls in GOSSIP_METHODS.items():
        assert cls.name == name and cls.needs_topology and cls.pattern == "p2p"
        assert not cls.allreduce_compatible


@pytest.mark.cuda
@pytest.mark.parametrize("method", sorted(GOSSIP_METHODS))
def test_cuda_tensors_give_the_cpu_result(method):
    cpu = run(4, GOSSIP_METHODS[method], steps=5)
    gpu = run(4, GOSSIP_METHODS[method], steps=5, device="cuda")
    for a, b in zip(cpu, gpu, strict=True):
        for x, y in zip(a["params"], b["params"], strict=True):
            assert y.device.type == "cuda"
            torch.testing.assert_close(y.cpu(), x, rtol=1e-9, atol=1e-9)
