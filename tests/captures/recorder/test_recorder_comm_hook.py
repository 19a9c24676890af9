"""CommHookRecorder: each worker's gradient before DDP's all-reduce; FSDP2 shards over two gloo ranks."""

import sys
from pathlib import Path

import pytest
import torch

from captures import open_capture

HERE = Path(__file__).resolve().parents[1]  # tests/captures, where capture_workers.py lives


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_ranks_ddp_hook_before_all_reduce_and_fsdp2_shards(tmp_path):
    import torch.multiprocessing as mp

    sys.path.insert(0, str(HERE))
    try:
        from capture_workers import hook_and_fsdp_rank
    finally:
        sys.path.remove(str(HERE))
    mp.spawn(hook_and_fsdp_rank, args=(2, str(tmp_path), str(tmp_path / "rendezvous")), nprocs=2, join=True)

    hook = open_capture(tmp_path / "hook")
    assert hook.ranks == [0, 1] and hook.steps == [0, 2] and hook.status == "complete"
    assert hook.manifest["extra"]["source"] == "ddp_comm_hook" and hook.layers[0] == "0.weight"
    refs = [torch.load(tmp_path / f"hook_ref.rank{r}.pt") for r in (0, 1)]
    for step in hook.steps:
        for name in hook.layers:
            mine = [hook.get(name, step, rank=r, as_torch=True) for r in (0, 1)]
            for r in (0, 1):  # each worker's own gradient, before any averaging
                assert torch.equal(mine[r], refs[r]["local"][step][name]), (step, name, r)
            # what DDP then left in p.grad: the fp16 mean of the recorded local gradients
            torch.testing.assert_close(refs[0]["averaged"][step][name], (mine[0] + mine[1]) / 2,
                                       rtol=2e-3, atol=1e-4)
        assert not torch.equal(hook.get("2.bias", step, rank=0, as_torch=True),
                               hook.get("2.bias", step, rank=1, as_torch=True))

    fsdp = open_capture(tmp_path / "fsdp")
    refs = [torch.load(tmp_path / f"fsdp_ref.rank{r}.pt") for r in (0, 1)]
    assert fsdp.ranks == [0, 1] and fsdp.steps == [0, 1]
    assert [fsdp.shard("0.weight", r)["local_shape"] for r in (0, 1)] == [[3, 6], [2, 6]]
    assert [fsdp.shard("0.weight", r)["global_offset"] for r in (0, 1)] == [[0, 0], [3, 0]]
    for step in fsdp.steps:
        for name in fsdp.layers:
            for r in (0, 1):
                assert torch.equal(fsdp.get(name, step, rank=r, as_torch=True), refs[r]["shards"][step][name])
            torch.testing.assert_close(fsdp.get_full(name, step, as_torch=True), refs[0]["means"][step][name],
                                       rtol=1e-5, atol=1e-7)
