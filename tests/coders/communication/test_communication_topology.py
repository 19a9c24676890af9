"""Topologies against closed forms: ring spectrum, MH weights, the optimal over-relaxed gossip step."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from coders.communication.topology import (
    from_adjacency,
    from_weights,
    fully_connected,
    make_topology,
    metropolis_hastings,
    ring,
    star,
    torus,
    watts_strogatz,
)


@pytest.mark.parametrize("n", [3, 5, 8, 16])
def test_ring_spectrum_closed_form(n):
    topo = ring(n)
    eye = np.eye(n)
    np.testing.assert_allclose(topo.W, (eye + np.roll(eye, 1, 1) + np.roll(eye, -1, 1)) / 3)
    expected = np.sort((1 + 2 * np.cos(2 * np.pi * np.arange(n) / n)) / 3)[::-1]
    np.testing.assert_allclose(topo.eigenvalues, expected, atol=1e-12)
    np.testing.assert_allclose(topo.spectral_gap, 2 * (1 - np.cos(2 * np.pi / n)) / 3, atol=1e-12)
    assert topo.neighbours(0) == sorted({1, n - 1})


def test_eight_ring_optimal_step_is_1308():
    topo = ring(8)
    mu = topo.laplacian_eigenvalues
    assert mu[1] == pytest.approx(0.195262, abs=1e-6)
    assert mu[-1] == pytest.approx(4 / 3, abs=1e-12)
    assert topo.optimal_gossip_step == pytest.approx(2 / (0.195262 + 4 / 3), abs=1e-6)
    assert round(topo.optimal_gossip_step, 3) == 1.308
    # the optimal step contracts strictly faster than gamma = 1 and equalises the extreme modes
    g = topo.optimal_gossip_step
    assert topo.gossip_contraction(g) < topo.gossip_contraction(1.0)
    assert abs(1 - g * mu[1]) == pytest.approx(abs(1 - g * mu[-1]), abs=1e-12)
    for other in np.linspace(0.5, 1.6, 23):
        assert topo.gossip_contraction(g) <= topo.gossip_contraction(other) + 1e-12


def test_torus_4x4_is_one_fifth_and_matches_kronecker_spectrum():
    topo = torus(16)
    assert topo.name == "torus-4x4"
    off = topo.W[~np.eye(16, dtype=bool)]
    np.testing.assert_allclose(off[off > 0], 0.2)
    np.testing.assert_allclose(np.diag(topo.W), 0.2)
    # the torus adjacency is the Kronecker sum of two 4-cycles: eigenvalues (1 + 2cos a + 2cos b)/5
    c = 2 * np.cos(2 * np.pi * np.arange(4) / 4)
    expected = np.sort(((1 + c[:, None] + c[None, :]) / 5).ravel())[::-1]
    np.testing.assert_allclose(topo.eigenvalues, expected, atol=1e-12)
    assert torus(8).name == "torus-2x4" and all(torus(8).degree(r) == 3 for r in range(8))


def test_fully_connected_averages_in_one_step_and_star_weights():
    full = fully_connected(6)
    np.testing.assert_allclose(full.W, np.full((6, 6), 1 / 6))
    assert full.spectral_gap == pytest.approx(1.0)
    s = star(5)
    np.testing.assert_allclose(s.W[0], np.full(5, 0.2))
    np.testing.assert_allclose(np.diag(s.W)[1:], 0.8)
    assert s.neighbours(3) == [0] and s.neighbours(0) == [1, 2, 3, 4]


def test_metropolis_hastings_general_graph_matches_networkx_and_is_doubly_stochastic():
    g = watts_strogatz(16)
    graph = nx.connected_watts_strogatz_graph(16, 3, 0.9, seed=1)
    deg = dict(graph.degree())
    for i, j in graph.edges():
        assert g.weight(i, j) == pytest.approx(1 / (1 + max(deg[i], deg[j])))
    np.testing.assert_allclose(g.W.sum(0), 1.0)
    np.testing.assert_allclose(g.W, g.W.T)
    assert g.eigenvalues[0] == pytest.approx(1.0)
    assert 0 < g.spectral_gap < 1


def test_user_adjacency_networkx_and_matrix_agree():
    graph = nx.petersen_graph()
    a = from_adjacency(graph)
    b = make_topology("custom", 10, adjacency=nx.to_numpy_array(graph))
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_allclose(a.W[a.adjacency], 0.25)  # 3-regular: 1/(1+3)
    c = make_topology(graph)
    np.testing.assert_array_equal(a.W, c.W)
    w = from_weights(metropolis_hastings(nx.to_numpy_array(graph)))
    np.testing.assert_array_equal(w.adjacency, a.adjacency)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="not connected"):
        from_adjacency(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]))
    with pytest.raises(ValueError, match="symmetric"):
        from_adjacency(np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    with pytest.raises(ValueError, match="rows must sum to 1"):
        from_weights(np.array([[0.5, 0.4], [0.4, 0.5]]))
    with pytest.raises(ValueError, match="unknown topology"):
        make_topology("hypercube", 8)
    with pytest.raises(ValueError, match="divisor"):
        torus(8, rows=3)
    with pytest.raises(ValueError, match="has 8 workers"):
        make_topology(ring(8), 4)
    with pytest.raises(ValueError, match="at least"):
        ring(0)
    with pytest.raises(ValueError, match="outside"):
        ring(4).neighbours(4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 14), p=st.floats(0.1, 0.9), seed=st.integers(0, 10_000))
def test_metropolis_hastings_on_random_connected_graphs(n, p, seed):
    graph = nx.gnp_random_graph(n, p, seed=seed)
    assume(nx.is_connected(graph))
    topo = from_adjacency(graph)
    np.testing.assert_allclose(topo.W, topo.W.T)
    np.testing.assert_allclose(topo.W.sum(1), 1.0)
    assert (topo.W >= 0).all() and (np.diag(topo.W) > 0).all()  # MH keeps a positive self-weight
    lam = topo.eigenvalues
    assert lam[0] == pytest.approx(1.0) and lam[-1] > -1.0 and topo.spectral_gap > 0
    assert all(topo.neighbours(i) == sorted(graph.neighbors(i)) for i in range(n))
    g = topo.optimal_gossip_step
    grid = np.linspace(0.05, 2.0 / topo.laplacian_eigenvalues[-1], 60)
    assert topo.gossip_contraction(g) <= min(topo.gossip_contraction(x) for x in grid) + 1e-9
    assert topo.gossip_contraction(g) < 1.0
