"""GradientRecorder's training step on the setups people train with: several optimizers,
zero_grad(set_to_none=False), a real GPT-2, aborted runs and a full disk."""

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from toy_training import TinyLM
from toy_training import lm_batch as _lm_batch
from toy_training import lm_loss as _lm_loss

from captures import CaptureWriteError, GradientRecorder, open_capture, store


def _train_two_optimizers(model, rec_dir, every, steps, opt_factory, separate_backward=False):
    """Train with two optimizers; return (references per step: grads as each optimizer saw them, updates)."""
    params = dict(model.named_parameters())
    first = [p for n, p in params.items() if "emb" in n or "wte" in n]
    rest = [p for n, p in params.items() if not ("emb" in n or "wte" in n)]
    opt_a, opt_b = opt_factory(first), opt_factory(rest)
    grads, updates = {}, {}
    with GradientRecorder(model, rec_dir, every=every, what=("grad", "update")) as rec:
        for step in range(steps):
            grads[step], updates[step] = {}, {}
            before = {n: p.detach().clone() for n, p in params.items()}
            if separate_backward:  # a GAN-like loop: each optimizer after its own backward
                for opt, group in ((opt_a, first), (opt_b, rest)):
                    model.zero_grad()
                    _lm_loss(model, _lm_batch(step)).backward()
                    grads[step].update({n: p.grad.clone() for n, p in params.items()
                                        if any(p is q for q in group)})
                    opt.step()
            else:
                opt_a.zero_grad()
                opt_b.zero_grad()
                _lm_loss(model, _lm_batch(step)).backward()
                grads[step] = {n: p.grad.clone() for n, p in params.items()}
                opt_a.step()
                opt_b.step()
            updates[step] = {n: p.detach() - before[n] for n, p in params.items()}
    return rec, grads, updates


@pytest.mark.parametrize("every", [1, 2])
@pytest.mark.parametrize("separate_backward", [False, True])
def test_two_optimizers_count_one_training_step(tmp_path, every, separate_backward):
    model = TinyLM()
    rec, grads, updates = _train_two_optimizers(
        model, tmp_path / "c", every, 5, lambda ps: torch.optim.AdamW(ps, lr=1e-2), separate_backward)
    cap = open_capture(tmp_path / "c")
    assert rec.step_count == 5 and cap.steps == list(range(0, 5, every)) and cap.status == "complete"
    for step in cap.steps:
        for name in cap.layers:
            assert torch.equal(cap.get(name, step, as_torch=True), grads[step][name]), (step, name)
            assert torch.equal(cap.get(name, step, kind="update", as_torch=True), updates[step][name])


@pytest.mark.parametrize("every", [1, 2])
def test_two_optimizers_on_a_transformers_gpt2(tmp_path, every):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=30, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    rec, grads, updates = _train_two_optimizers(model, tmp_path / "c", every, 4,
                                                lambda ps: torch.optim.Adam(ps, lr=1e-3))
    cap = open_capture(tmp_path / "c")
    assert cap.steps == list(range(0, 4, every))
    assert cap.aliases == {"lm_head.weight": "transformer.wte.weight"}
    for step in cap.steps:
        for name in cap.layers:
            assert torch.equal(cap.get(name, step, as_torch=True), grads[step][name])


@pytest.mark.parametrize("mode", ["optimizer", "manual"])
def test_zero_grad_without_set_to_none_records_what_the_optimizer_sees(tmp_path, mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    with GradientRecorder(model, tmp_path / "c", what=("grad", "update"),
                          optimizer=opt if mode == "optimizer" else None) as rec:
        model(torch.ones(1, 4)).sum().backward()
        opt.step()
        if mode == "manual":
            rec.step()
        opt.zero_grad(set_to_none=False)
        model[0].weight.sum().backward()  # only 0.weight used: the others keep zero gradients
        mid = model[1].weight.detach().clone()
        opt.step()
        if mode == "manual":
            rec.step()
    cap = open_capture(tmp_path / "c")
    assert cap.steps == [0, 1]
    assert np.array_equal(cap.get("0.bias", 1), np.zeros(3))
    assert np.array_equal(cap.get("1.weight", 1), np.zeros((2, 3)))
    # the optimizer consumed those zeros: momentum and weight decay still moved the parameter
    moved = (model[1].weight.detach() - mid).numpy()
    assert np.abs(moved).max() > 0
    if mode == "optimizer":
        np.testing.assert_array_equal(cap.get("1.weight", 1, kind="update"), moved)


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyboardInterrupt()])
def test_an_exception_in_the_block_marks_the_capture_aborted(tmp_path, exc):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(type(exc)):
        with GradientRecorder(model, tmp_path / "c", optimizer=opt):
            for step in range(3):
                opt.zero_grad()
                model(torch.ones(1, 3)).sum().backward()
                opt.step()
                if step == 1:
                    raise exc
    cap = open_capture(tmp_path / "c")
    assert cap.status == "aborted" and cap.manifest["status"] == "aborted"
    assert cap.manifest["abort_reason"] == {"ValueError": "ValueError: boom",
                                            "KeyboardInterrupt": "KeyboardInterrupt"}[type(exc).__name__]
    assert cap.steps == [0, 1] and cap.check().ok.all()  # the steps that completed are kept


def test_disk_full_in_the_writer_is_a_clear_error_and_aborts(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)

    def full(path, tensors, metadata):
        Path(path).write_bytes(b"\0" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    rec = GradientRecorder(model, tmp_path / "c", optimizer=None)
    monkeypatch.setattr(store.files, "_write_safetensors", full)
    model(torch.ones(1, 3)).sum().backward()
    rec.step()
    with pytest.raises(CaptureWriteError, match="000000000.rank0.safetensors: cannot write .No space left"):
        rec.close()
    monkeypatch.undo()
    cap = open_capture(tmp_path / "c")
    assert cap.status == "aborted" and "No space left" in cap.manifest["abort_reason"]
    assert not [p for p in (tmp_path / "c").rglob("*") if ".tmp" in p.name]
