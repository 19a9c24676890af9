"""DDP hooks on gloo: PowerSGD equals torch powerSGD_hook, fp16 equals fp16_compress_hook."""

from __future__ import annotations

import pytest
import torch
from runtime_dist_workers import ddp_hooks_compare

from coders.compressors import Cast
from coders.runtime.comm import run_processes
from coders.runtime.ddp_hooks import CompressorHookState, PowerSGDHookState


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_hooks_match_pytorch_on_gloo():
    res = run_processes(2, ddp_hooks_compare)
    for r in range(2):
        out = res[r]
        for rank in (1, 2):
            torch.testing.assert_close(out[f"ours_psgd{rank}"], out[f"torch_psgd{rank}"],
                                       atol=1e-5, rtol=1e-4)
            # PowerSGD really compresses (the result is not plain all-reduce SGD)
            assert not torch.allclose(out[f"ours_psgd{rank}"], out["plain"], atol=1e-4)
        torch.testing.assert_close(out["ours_fp16"], out["torch_fp16"], atol=1e-6, rtol=1e-5)
        assert not torch.allclose(out["ours_topk_ef"], out["plain"], atol=1e-4)
        assert not torch.allclose(out["ours_vote"], out["plain"], atol=1e-4)
    # every replica ends with the same model
    for key in ("ours_psgd1", "ours_fp16", "ours_topk_ef", "ours_vote"):
        assert torch.equal(res[0][key], res[1][key])
    # top-k at 10% of one bucket of 130 + 66 + 21 = 217 entries: k = 22 fp32 values + int32 indices, 6 steps
    assert res[0]["topk_bits"] == 6 * 22 * 64


def test_hook_states_reject_bad_options():
    with pytest.raises(ValueError, match="start_powerSGD_iter"):
        PowerSGDHookState(start_powerSGD_iter=1)
    with pytest.raises(ValueError, match="rank"):
        PowerSGDHookState(matrix_approximation_rank=0)
    with pytest.raises(ValueError, match="Compressor"):
        CompressorHookState("bf16")
    assert CompressorHookState(Cast("fp16")).compressor.linear
