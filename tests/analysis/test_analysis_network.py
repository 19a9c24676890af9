"""The alpha-beta network model (analysis.network) against hand-computed values."""

import pytest

from analysis.network import (
    Network,
    comm_time,
    iteration_time,
    p2p_time,
    parameter_server_time,
    ring_allgather_time,
    ring_allreduce_time,
)

# 10 Gbit/s and 5 us: alpha = 5e-6 s, B = 1e10 bit/s
NET = Network(bandwidth_gbps=10.0, latency_us=5.0)


def test_network_units():
    assert NET.alpha == pytest.approx(5e-6)
    assert NET.bits_per_s == pytest.approx(1e10)
    assert "10 Gbit/s" in NET.describe()


def test_ring_allreduce_hand_computed():
    # W = 8, S = 1.6e7 bits (1e6 bf16 entries): 2*7*5e-6 + 2*7/8*1.6e7/1e10 = 7e-5 + 2.8e-3
    assert ring_allreduce_time(1.6e7, 8, NET) == pytest.approx(7e-5 + 2.8e-3, rel=1e-12)
    assert ring_allreduce_time(1.6e7, 1, NET) == 0.0


def test_ring_allgather_hand_computed():
    # W = 4, S = 1e6 bits: 3*5e-6 + 3*1e6/1e10 = 1.5e-5 + 3e-4
    assert ring_allgather_time(1e6, 4, NET) == pytest.approx(3.15e-4, rel=1e-12)


def test_parameter_server_hand_computed():
    # W = 8, up 1e6, down 2e6: 2*5e-6 + 8*3e6/1e10 = 1e-5 + 2.4e-3
    assert parameter_server_time(1e6, 2e6, 8, NET) == pytest.approx(2.41e-3, rel=1e-12)


def test_p2p_hand_computed():
    # ring degree 2, 5e5 bits per neighbour: 5e-6 + 2*5e5/1e10 = 5e-6 + 1e-4
    assert p2p_time(5e5, 2, NET) == pytest.approx(1.05e-4, rel=1e-12)
    # comm_time takes the total sent by the worker and splits it over the neighbours
    assert comm_time("p2p", 1e6, 0.0, 8, NET, degree=2) == pytest.approx(1.05e-4, rel=1e-12)
    assert p2p_time(5e5, 0, NET) == 0.0


def test_allreduce_beats_allgather_for_same_payload():
    # the reason all-reduce compatibility matters: 2(W-1)/W < W-1 for W > 2
    for w in (3, 8, 64):
        assert ring_allreduce_time(1e8, w, NET) < ring_allgather_time(1e8, w, NET)


def test_comm_time_dispatch_and_errors():
    assert comm_time("allreduce", 1e6, 0, 8, NET) == ring_allreduce_time(1e6, 8, NET)
    assert comm_time("allgather", 1e6, 0, 8, NET) == ring_allgather_time(1e6, 8, NET)
    assert comm_time("ps", 1e6, 5e5, 8, NET) == parameter_server_time(1e6, 5e5, 8, NET)
    with pytest.raises(ValueError, match="pattern"):
        comm_time("bus", 1e6, 0, 8, NET)
    with pytest.raises(ValueError, match="degree"):
        comm_time("p2p", 1e6, 0, 8, NET)
    with pytest.raises(ValueError, match="bits"):
        ring_allreduce_time(-1.0, 8, NET)
    with pytest.raises(ValueError, match="workers"):
        ring_allreduce_time(1.0, 0, NET)
    with pytest.raises(ValueError, match="bandwidth"):
        Network(bandwidth_gbps=0.0)
    with pytest.raises(ValueError, match="latency"):
        Network(latency_us=float("nan"))


def test_iteration_time_overlap():
    # compute 0.3 s (fwd 0.1, bwd 0.2), codec 0.01, comm 0.05
    assert iteration_time(0.3, 0.01, 0.05, overlap=False) == pytest.approx(0.36)
    # overlap hides comm under the 0.2 s backward
    assert iteration_time(0.3, 0.01, 0.05, overlap=True) == pytest.approx(0.31)
    # comm longer than backward: fwd + comm + codec
    assert iteration_time(0.3, 0.01, 0.5, overlap=True) == pytest.approx(0.61)
    with pytest.raises(ValueError, match="comm_s"):
        iteration_time(0.3, 0.0, -1.0, overlap=True)
