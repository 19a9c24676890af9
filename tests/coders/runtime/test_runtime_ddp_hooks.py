"""DDP hooks on gloo: PowerSGD equals torch powerSGD_hook, fp16 equals fp16_compress_hook."""

from __future__ import annotations

import pytest
import torch
from runtime_dist_workers import ddp_hooks_compare

from coders.communication.comm import run_processes
from coders.compressors import Cast
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


class _Bucket:
    """The part of dist.GradBucket the hooks use: index, flat buffer, gradient views, is_last."""

    def __init__(self, index: int, shapes: list[tuple[int, ...]], values: torch.Tensor):
        self._index, self._buf = index, values.clone()
        self._grads, offset = [], 0
        for s in shapes:
            n = int(torch.Size(s).numel())
            self._grads.append(self._buf[offset : offset + n].view(s))
            offset += n

    def index(self) -> int:
        return self._index

    def buffer(self) -> torch.Tensor:
        return self._buf

    def gradients(self) -> list[torch.Tensor]:
        return self._grads

    def is_last(self) -> bool:
        return True


def test_bucket_memories_restart_when_ddp_rebuilds_the_bucket(tmp_path):
    """DDP rebuilds its buckets after iteration 1: bucket 0's EF residual / momentum must not be
    carried over to a bucket 0 holding other parameters (same size here, so nothing would fail)."""
    import torch.distributed as dist

    from coders.compressors import TopK
    from coders.runtime.ddp_hooks import SignVoteHookState, compressor_hook, sign_vote_hook

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        x = torch.tensor([1.0, -4.0, 2.0, 0.5, 3.0, -0.25])
        ef = CompressorHookState(TopK(k=1), error_feedback=True)
        out1 = compressor_hook(ef, _Bucket(0, [(2, 2), (2,)], x)).value()
        assert torch.equal(out1, torch.tensor([0.0, -4.0, 0.0, 0.0, 0.0, 0.0]))
        # same layout: the residual of step 1 is added (the 3.0 + 3.0 entry wins)
        same = compressor_hook(ef, _Bucket(0, [(2, 2), (2,)], x)).value()
        assert torch.equal(same, torch.tensor([0.0, 0.0, 0.0, 0.0, 6.0, 0.0]))
        # rebuilt bucket 0 with other parameters (a (2,) and a (2, 2)): the memory starts from zero
        ef2 = CompressorHookState(TopK(k=1), error_feedback=True)
        compressor_hook(ef2, _Bucket(0, [(2, 2), (2,)], x))
        rebuilt = compressor_hook(ef2, _Bucket(0, [(2,), (2, 2)], x)).value()
        assert torch.equal(rebuilt, torch.tensor([0.0, -4.0, 0.0, 0.0, 0.0, 0.0]))

        vote = SignVoteHookState(beta=0.9)
        sign_vote_hook(vote, _Bucket(0, [(2, 2), (2,)], -10 * x))
        carried = sign_vote_hook(vote, _Bucket(0, [(2, 2), (2,)], x)).value()
        assert torch.equal(carried, -torch.sign(x))  # momentum of -10 x outweighs 0.1 x
        restarted = sign_vote_hook(vote, _Bucket(0, [(6,)], x)).value()
        assert torch.equal(restarted, torch.sign(x))
    finally:
        dist.destroy_process_group()
