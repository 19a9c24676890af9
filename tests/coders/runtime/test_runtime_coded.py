"""coded-sgd on torch.distributed: simulator and gloo agree bit for bit; the DDP hook equals the method."""

from __future__ import annotations

import pytest
import torch
from runtime_dist_workers import coded_hook_vs_method, coded_sgd_synthetic

from coders.communication.comm import run_processes, run_threads

OPTIONS = [
    {"quantizer": "uniform", "model": "gennorm", "coder": "ans"},
    {"quantizer": "stochastic", "model": "histogram", "coder": "huffman", "refresh": 2},
    {"quantizer": "qsgd", "model": "zi-gennorm", "coder": "ans", "error_feedback": False},
]


@pytest.fixture(scope="module")
def gloo_runs():
    """All option sets in one launch of the two gloo processes (spawning dominates)."""
    return run_processes(2, coded_sgd_synthetic, OPTIONS)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(OPTIONS)), ids=[o["quantizer"] for o in OPTIONS])
def test_gloo_and_simulator_send_and_decode_the_same_bytes(case, gloo_runs):
    sim = run_threads(2, coded_sgd_synthetic, OPTIONS[case])
    gloo = [rank_out[case] for rank_out in gloo_runs]
    for r in range(2):
        assert sim[r]["bits_up"] == gloo[r]["bits_up"]
        assert torch.equal(sim[r]["params"], gloo[r]["params"])
        for step in range(3):
            assert torch.equal(sim[r]["x_hat"][step], gloo[r]["x_hat"][step])
            for sender in range(2):
                # every rank decoded exactly what the sender's quantizer produced, in both runtimes
                assert torch.equal(gloo[r]["decoded"][step][sender], gloo[sender]["x_hat"][step])
                assert torch.equal(sim[r]["decoded"][step][sender], sim[sender]["x_hat"][step])
    assert torch.equal(gloo[0]["params"], gloo[1]["params"])


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_coded_hook_gives_the_methods_model():
    cases = [{}, {"quantizer": "stochastic", "model": "laplace", "coder": "huffman", "error_feedback": False},
             {"quantizer": "qsgd", "model": "histogram", "refresh": "once"}]
    runs = run_processes(2, coded_hook_vs_method, cases)
    for case in range(len(cases)):
        res = [rank_out[case] for rank_out in runs]
        for r in range(2):
            assert torch.equal(res[r]["hook"], res[r]["method"]), cases[case]
            assert res[r]["hook_bits"] == res[r]["method_bits"] > 0
        assert torch.equal(res[0]["hook"], res[1]["hook"])
