"""Which parameters are recorded under which names: selection, tied-weight aliases, wrapper prefixes."""

import pytest
import torch
from torch import nn
from toy_training import TinyLM
from toy_training import lm_batch as _lm_batch
from toy_training import lm_loss as _lm_loss
from toy_training import mlp as _model

from captures import GradientRecorder, open_capture
from captures.recorder import select_layers


def test_layer_selection():
    model = _model()
    assert list(select_layers(model, "*.bias")) == ["0.bias", "2.bias"]
    assert list(select_layers(model, ["2.weight", "0.weight"])) == ["0.weight", "2.weight"]
    assert list(select_layers(model, lambda n, p: p.ndim == 2)) == ["0.weight", "2.weight"]
    model[0].bias.requires_grad_(False)
    assert "0.bias" not in select_layers(model, None)
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        select_layers(model, "conv*")
    with pytest.raises(ValueError, match="unknown or frozen"):
        select_layers(model, ["0.bias"])


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
