"""GradientRecorder on the setups people train with: several optimizers, zero_grad(set_to_none=False),
tied weights, wrapper prefixes, FSDP2 shards, a DDP comm hook before the all-reduce, aborted runs."""

import errno
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from captures import CaptureWriteError, GradientRecorder, open_capture, store
from captures.recorder import select_layers

HERE = Path(__file__).parent


class TinyLM(nn.Module):
    """Embedding -> linear -> head; ``tied=True`` makes the head share the embedding matrix."""

    def __init__(self, vocab=30, d=8, tied=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, d)
        self.body = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.tanh(self.body(self.emb(idx))))


def _lm_batch(step, vocab=30):
    g = torch.Generator().manual_seed(step)
    return torch.randint(0, vocab, (4, 6), generator=g), torch.randint(0, vocab, (4, 6), generator=g)


def _lm_loss(model, batch):
    x, y = batch
    out = model(x)
    out = getattr(out, "logits", out)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


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


def test_tied_weights_are_recorded_once_with_their_alias(tmp_path):
    model = TinyLM(tied=True)
    assert list(select_layers(model, ["head.weight"])) == ["emb.weight"]
    assert list(select_layers(model, "head.*")) == ["emb.weight"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientRecorder(model, tmp_path / "all", optimizer=opt), \
            GradientRecorder(model, tmp_path / "alias", layers=["head.weight"], optimizer=opt):
        _lm_loss(model, _lm_batch(0)).backward()
        ref = model.emb.weight.grad.clone()
        opt.step()
    cap = open_capture(tmp_path / "all")
    assert cap.layers == ["emb.weight", "body.weight", "body.bias"]
    assert cap.aliases == {"head.weight": "emb.weight"} and cap.manifest["aliases"] == cap.aliases
    assert torch.equal(cap.get("head.weight", 0, as_torch=True), ref)  # both uses summed, read by alias
    assert [r.layer for r in cap.records(layers=["head.weight"])] == ["emb.weight"]
    alias = open_capture(tmp_path / "alias")
    assert alias.layers == ["emb.weight"] and torch.equal(alias.get("head.weight", 0, as_torch=True), ref)
    assert "aliases   head.weight = emb.weight" in cap.describe()


def test_wrapper_prefixes_are_stripped_unless_asked(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self, inner, attr):
            super().__init__()
            setattr(self, attr, inner)

        def forward(self, x):
            return next(iter(self.children()))(x)

    inner = nn.Sequential(nn.Linear(3, 2))
    model = Wrapper(Wrapper(inner, "_orig_mod"), "module")
    assert list(select_layers(model, None)) == ["0.weight", "0.bias"]
    assert list(select_layers(model, ["module._orig_mod.0.bias"])) == ["0.bias"]
    assert list(select_layers(model, None, strip_prefixes=())) == ["module._orig_mod.0.weight",
                                                                  "module._orig_mod.0.bias"]
    with GradientRecorder(model, tmp_path / "c", optimizer=None, strip_prefixes=("module.",)) as rec:
        model(torch.ones(1, 3)).sum().backward()
        rec.step()
    assert open_capture(tmp_path / "c").layers == ["_orig_mod.0.weight", "_orig_mod.0.bias"]
    clash = nn.Module()
    clash.weight = nn.Parameter(torch.ones(1))
    clash.module = nn.Module()
    clash.module.weight = nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="makes 'weight' and 'module.weight' both 'weight'"):
        select_layers(clash, None)


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


# --- FSDP2 -----------------------------------------------------------------------------------------
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
