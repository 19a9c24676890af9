"""GradientRecorder: recorded values equal p.grad / the update exactly; sampling, accumulation, summaries."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn
from toy_training import mlp as _model
from toy_training import mlp_batch as _batch
from toy_training import mlp_loss as _loss

from captures import GradientRecorder, open_capture
from captures.recorder import sample_indices

HERE = Path(__file__).resolve().parents[1]  # tests/captures, where capture_workers.py lives


@pytest.mark.parametrize("mode", ["manual", "optimizer", "auto"])
def test_full_capture_equals_grad_and_update_exactly(tmp_path, mode):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer = {"manual": None, "optimizer": opt, "auto": "auto"}[mode]
    ref_grad, ref_upd = {}, {}
    with GradientRecorder(model, tmp_path / "c", every=3, what=("grad", "update"),
                          optimizer=optimizer) as rec:
        for step in range(8):
            opt.zero_grad()
            _loss(model, _batch(step)).backward()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            ref_grad[step] = {n: p.grad.clone() for n, p in model.named_parameters()}
            opt.step()
            ref_upd[step] = {n: p.detach() - before[n] for n, p in model.named_parameters()}
            if mode == "manual":
                rec.step()
    cap = open_capture(tmp_path / "c")
    assert cap.steps == [0, 3, 6] and rec.step_count == 8
    assert cap.layers == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for step in cap.steps:
        for name in cap.layers:
            got = cap.get(name, step, as_torch=True)
            assert got.dtype == torch.float32 and got.shape == ref_grad[step][name].shape
            assert torch.equal(got, ref_grad[step][name])
            assert torch.equal(cap.get(name, step, kind="update", as_torch=True), ref_upd[step][name])
    assert cap.manifest["status"] == "complete" and cap.manifest["extra"]["steps_seen"] == 8


def test_sampled_capture_equals_grad_at_fixed_indices(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    refs = {}
    with GradientRecorder(model, tmp_path / "c", every=1, sample=50, seed=7, optimizer=opt):
        for step in range(3):
            opt.zero_grad()
            _loss(model, _batch(step)).backward()
            refs[step] = {n: p.grad.clone() for n, p in model.named_parameters()}
            opt.step()
    cap = open_capture(tmp_path / "c")
    idx = cap.indices("0.weight")
    assert len(idx) == 50 and np.all(np.diff(idx) > 0) and idx.max() < 600
    np.testing.assert_array_equal(idx, sample_indices("0.weight", 600, 50, seed=7))
    assert cap.indices("2.bias") is None  # 4 entries <= 50: stored whole
    for step in range(3):
        got = cap.get("0.weight", step)
        assert got.shape == (50,)
        np.testing.assert_array_equal(got, refs[step]["0.weight"].reshape(-1).numpy()[idx])
        np.testing.assert_array_equal(cap.get("2.bias", step), refs[step]["2.bias"].numpy())
    # a different seed gives different indices
    assert not np.array_equal(idx, sample_indices("0.weight", 600, 50, seed=8))


def test_fraction_sampling_and_dtype_cast(tmp_path):
    model = _model()
    with GradientRecorder(model, tmp_path / "c", sample=0.25, dtype=torch.bfloat16, optimizer=None) as rec:
        _loss(model, _batch(0)).backward()
        ref = model[0].weight.grad.clone()
        rec.step()
    cap = open_capture(tmp_path / "c")
    idx = cap.indices("0.weight")
    assert len(idx) == 150
    got = cap.get("0.weight", 0, as_torch=True)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, ref.reshape(-1)[torch.from_numpy(idx)].to(torch.bfloat16))
    assert cap.get("0.weight", 0).dtype == np.float32  # numpy has no bfloat16


def test_gradient_accumulation_is_recorded_once_after_accumulation(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    refs, micro_grads = {}, {}
    with GradientRecorder(model, tmp_path / "c", every=2, optimizer=opt) as rec:
        for step in range(4):
            opt.zero_grad()
            micro_grads[step] = []
            for micro in range(3):
                before = model[2].weight.grad
                before = torch.zeros_like(model[2].weight) if before is None else before.clone()
                _loss(model, _batch(step, micro)).div(3).backward()
                micro_grads[step].append(model[2].weight.grad - before)
            refs[step] = {n: p.grad.clone() for n, p in model.named_parameters()}
            opt.step()
    cap = open_capture(tmp_path / "c")
    assert cap.steps == [0, 2] and rec.steps_recorded == [0, 2]
    for step in cap.steps:
        for name in cap.layers:
            assert torch.equal(cap.get(name, step, as_torch=True), refs[step][name])
        got = cap.get("2.weight", step, as_torch=True)
        # the accumulated sum of the three micro-batches, not the last one alone
        torch.testing.assert_close(got, sum(micro_grads[step]), rtol=1e-5, atol=1e-7)
        assert (got - micro_grads[step][-1]).abs().max() > 1e-3


def test_unused_parameter_has_no_record_that_step(tmp_path):
    model = _model()
    with GradientRecorder(model, tmp_path / "c", layers="0.*", optimizer=None) as rec:
        _loss(model, _batch(0)).backward()
        rec.step()
        model.zero_grad(set_to_none=True)
        model[0].weight.sum().backward()  # bias unused this step
        rec.step()
    cap = open_capture(tmp_path / "c")
    assert cap.layers == ["0.weight", "0.bias"]
    assert torch.equal(cap.get("0.weight", 1, as_torch=True), torch.ones(30, 20))
    with pytest.raises(ValueError, match="no 'grad' record of layer '0.bias' at step 1"):
        cap.get("0.bias", 1)


def test_gradients_assigned_without_backward_are_recorded(tmp_path):
    model = _model()
    with GradientRecorder(model, tmp_path / "c", optimizer=None) as rec:
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.5)
        rec.step()
    cap = open_capture(tmp_path / "c")
    assert cap.steps == [0]
    assert all(np.all(cap.get(n, 0) == 0.5) for n in cap.layers)


def test_summary_only_moments_match_scipy_and_numpy(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    refs = {}
    with GradientRecorder(model, tmp_path / "c", every=2, summary_only=True, hist_bins=16,
                          what=("grad", "update"), optimizer=opt):
        for step in range(3):
            opt.zero_grad()
            _loss(model, _batch(step)).backward()
            refs[step] = {n: p.grad.double().numpy().ravel().copy() for n, p in model.named_parameters()}
            opt.step()
    cap = open_capture(tmp_path / "c")
    with pytest.raises(ValueError, match="summary-only"):
        cap.get("0.weight", 0)
    m = cap.moments()
    assert len(m) == 2 * 4 * 2  # steps x layers x kinds
    for row in m[m["kind"] == "grad"].itertuples():
        x = refs[row.step][row.layer]
        assert row.n == x.size and row.zeros == np.count_nonzero(x == 0) and row.nonfinite == 0
        assert row.mean == pytest.approx(x.mean(), rel=1e-12, abs=1e-15)
        assert row.std == pytest.approx(x.std(), rel=1e-10)
        assert row.abs_mean == pytest.approx(np.abs(x).mean(), rel=1e-12)
        assert row.kurtosis == pytest.approx(scipy.stats.kurtosis(x), rel=1e-8)
        assert (row.min, row.max) == (x.min(), x.max())
        counts, edges = np.histogram(x, bins=16)
        np.testing.assert_allclose(row.hist_edges, edges, rtol=1e-12)
        np.testing.assert_array_equal(row.hist_counts, counts)
    s = cap.summary()  # a record stores 9 moments + 16 histogram counts per layer, not entries
    assert "stored" not in s and s["moments"].tolist() == [9] * 4 and s["hist_bins"].tolist() == [16] * 4


def test_bad_arguments_and_mode_conflicts(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="every"):
        GradientRecorder(model, tmp_path / "a", every=0)
    with pytest.raises(ValueError, match="what"):
        GradientRecorder(model, tmp_path / "b", what=("grads",))
    with pytest.raises(ValueError, match="summary_only"):
        GradientRecorder(model, tmp_path / "c", summary_only=True, sample=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientRecorder(model, tmp_path / "d") as rec:  # auto mode
        _loss(model, _batch(0)).backward()
        opt.step()
        with pytest.raises(RuntimeError, match="already counted by the optimizer hook"):
            rec.step()
    with pytest.raises(ValueError, match="already holds a capture"):
        GradientRecorder(model, tmp_path / "d")
    # an optimizer over other parameters does not drive the recorder
    other = nn.Linear(2, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="holds none of the recorded parameters"):
        GradientRecorder(model, tmp_path / "f", optimizer=other_opt)
    with GradientRecorder(model, tmp_path / "e") as rec:
        other(torch.ones(1, 2)).sum().backward()
        other_opt.step()
        assert rec.step_count == 0


def test_writer_back_pressure_and_error_propagation(tmp_path, monkeypatch):
    model = _model()
    rec = GradientRecorder(model, tmp_path / "c", optimizer=None, queue_size=2)
    real_write = rec._writer.write_step

    def slow_write(step, tensors):
        time.sleep(0.02)
        return real_write(step, tensors)

    monkeypatch.setattr(rec._writer, "write_step", slow_write)
    refs = {}
    for step in range(10):
        model.zero_grad()
        _loss(model, _batch(step)).backward()
        refs[step] = model[2].weight.grad.clone()
        rec.step()
        assert rec._n_buffer_sets <= 2  # never more host buffers than queue_size
    rec.close()
    cap = open_capture(tmp_path / "c")
    assert cap.steps == list(range(10))
    for step in range(10):  # buffers were reused without corrupting earlier records
        assert torch.equal(cap.get("2.weight", step, as_torch=True), refs[step])

    rec = GradientRecorder(model, tmp_path / "d", optimizer=None)

    def failing_write(step, tensors):
        raise OSError("disk full")

    monkeypatch.setattr(rec._writer, "write_step", failing_write)
    _loss(model, _batch(0)).backward()
    rec.step()
    with pytest.raises(RuntimeError, match="disk full"):
        for _ in range(50):
            time.sleep(0.01)
            rec.step()
    with pytest.raises(RuntimeError, match="disk full"):
        rec.close()


def test_sigkill_mid_run_leaves_completed_steps_readable(tmp_path):
    out = tmp_path / "killed"
    path = os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(HERE / "capture_workers.py"), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if out.joinpath("steps").is_dir() and len(list(out.joinpath("steps").iterdir())) >= 6:
                break
            if proc.poll() is not None:
                pytest.fail(f"recorder process died: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
        else:
            pytest.fail("recorder process wrote fewer than 6 steps in 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cap = open_capture(out)
    assert cap.manifest["status"] == "recording"
    assert len(cap.steps) >= 5 and cap.steps == list(range(len(cap.steps)))  # a prefix, no gaps
    assert cap.check()["ok"].all() and cap.status == "interrupted"
    for step in cap.steps:
        values = cap.get("w", step)
        assert values.shape == (1024, 1024) and values.min() == values.max() == step + 1


@pytest.mark.distributed
def test_two_gloo_ranks_write_one_capture_readable_per_rank(tmp_path):
    import torch.multiprocessing as mp

    sys.path.insert(0, str(HERE))
    try:
        from capture_workers import gloo_rank
    finally:
        sys.path.remove(str(HERE))
    out = tmp_path / "dist"
    mp.spawn(gloo_rank, args=(2, str(out), str(tmp_path / "rendezvous")), nprocs=2, join=True)
    cap = open_capture(out)
    assert cap.ranks == [0, 1] and cap.steps == [0, 2, 4]
    assert cap.manifest["world_size"] == 2 and cap.kinds == ["grad", "update"]
    names = sorted(os.listdir(out / "steps"))
    assert names == [f"{s:09d}.rank{r}.safetensors" for s in (0, 2, 4) for r in (0, 1)]
    for rank in (0, 1):
        ref = torch.load(out / f"reference.rank{rank}.pt")
        for step in (0, 2, 4):
            for name in cap.layers:
                assert torch.equal(cap.get(name, step, rank=rank, as_torch=True), ref[step][name])
    # local gradients differ between the ranks (different data); the all-reduced updates agree
    assert not np.array_equal(cap.get("2.bias", 0, rank=0), cap.get("2.bias", 0, rank=1))
    np.testing.assert_allclose(cap.get("2.bias", 2, rank=0, kind="update"),
                               cap.get("2.bias", 2, rank=1, kind="update"), rtol=0, atol=0)
    # DDP + no_sync accumulation: one record per step = the all-reduced p.grad, the same on both ranks
    ddp = open_capture(tmp_path / "dist_ddp")
    assert ddp.ranks == [0, 1] and ddp.steps == [0, 1] and ddp.layers[0] == "0.weight"
    for rank in (0, 1):
        ref = torch.load(tmp_path / "dist_ddp" / f"reference.rank{rank}.pt")
        for step in (0, 1):
            for name in ddp.layers:
                assert torch.equal(ddp.get(name, step, rank=rank, as_torch=True), ref[step][name])
    np.testing.assert_array_equal(ddp.get("2.weight", 1, rank=0), ddp.get("2.weight", 1, rank=1))


@pytest.mark.cuda
def test_cuda_capture_equals_grad_exactly(tmp_path):
    model = _model().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    refs = {}
    with GradientRecorder(model, tmp_path / "full", what=("grad", "update"), optimizer=opt) as full, \
            GradientRecorder(model, tmp_path / "sampled", sample=64, dtype=torch.float16, optimizer=opt), \
            GradientRecorder(model, tmp_path / "summary", summary_only=True, optimizer=opt):
        for step in range(4):
            opt.zero_grad()
            x, y = _batch(step)
            _loss(model, (x.cuda(), y.cuda())).backward()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            refs[step] = {n: p.grad.detach().cpu().clone() for n, p in model.named_parameters()}
            opt.step()
            refs[step].update({f"u/{n}": (p.detach() - before[n]).cpu() for n, p in model.named_parameters()})
        assert full._buffers is None
    cap = open_capture(tmp_path / "full")
    samp = open_capture(tmp_path / "sampled")
    summ = open_capture(tmp_path / "summary").moments()
    for step in range(4):
        for name in cap.layers:
            assert torch.equal(cap.get(name, step, as_torch=True), refs[step][name])
            assert torch.equal(cap.get(name, step, kind="update", as_torch=True), refs[step][f"u/{name}"])
            idx = samp.indices(name)
            flat = refs[step][name].reshape(-1)
            want = flat if idx is None else flat[torch.from_numpy(idx)]
            assert torch.equal(samp.get(name, step, as_torch=True), want.half())
            row = summ[(summ.step == step) & (summ.layer == name)].iloc[0]
            assert row["mean"] == pytest.approx(flat.double().mean().item(), rel=1e-9, abs=1e-15)
    assert "cuda" in cap.manifest["device"]
