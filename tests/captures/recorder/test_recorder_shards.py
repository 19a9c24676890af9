"""FSDP2: each rank records its local shard with where it sits; Capture.get_full puts them together."""

import pytest
import torch
from torch import nn

from captures import GradientRecorder, open_capture


@pytest.fixture
def gloo_world_of_one(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_fsdp2_one_process_records_the_local_shards(tmp_path, gloo_world_of_one):
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    fully_shard(model[0])
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    refs, upd = {}, {}
    with GradientRecorder(model, tmp_path / "full", what=("grad", "update")), \
            GradientRecorder(model, tmp_path / "sampled", sample=4, dtype=torch.bfloat16, optimizer=opt), \
            GradientRecorder(model, tmp_path / "summary", summary_only=True, hist_bins=8):
        for step in range(3):
            opt.zero_grad()
            model(torch.randn(4, 6, generator=torch.Generator().manual_seed(step))).pow(2).sum().backward()
            refs[step] = {n: p.grad.to_local().clone() for n, p in model.named_parameters()}
            before = {n: p.to_local().detach().clone() for n, p in model.named_parameters()}
            opt.step()
            upd[step] = {n: p.to_local().detach() - before[n] for n, p in model.named_parameters()}
    cap = open_capture(tmp_path / "full")
    assert cap.steps == [0, 1, 2] and cap.layers == ["0.weight", "0.bias", "2.weight", "2.bias"]
    sh = cap.shard("0.weight")
    assert sh["placements"] == ["Shard(dim=0)"] and sh["global_shape"] == [5, 6]
    assert sh["global_offset"] == [0, 0] and sh["local_shape"] == [5, 6]
    for step in cap.steps:
        for name in cap.layers:
            assert torch.equal(cap.get(name, step, as_torch=True), refs[step][name])
            assert torch.equal(cap.get_full(name, step, as_torch=True), refs[step][name])
            assert torch.equal(cap.get(name, step, kind="update", as_torch=True), upd[step][name])
    samp = open_capture(tmp_path / "sampled")
    idx = torch.from_numpy(samp.indices("0.weight"))
    want = refs[2]["0.weight"].reshape(-1)[idx].bfloat16()
    assert torch.equal(samp.get("0.weight", 2, as_torch=True), want)
    with pytest.raises(ValueError, match="was sampled"):
        samp.get_full("0.weight", 2)
    mom = open_capture(tmp_path / "summary").moments()
    row = mom[(mom.step == 1) & (mom.layer == "2.weight")].iloc[0]
    assert row["mean"] == pytest.approx(refs[1]["2.weight"].double().mean().item(), rel=1e-12)
