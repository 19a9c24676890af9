"""Codebooks on real captured gradients: nesting by construction, within 2% of the entropy on large
layers, every quantizer's cells, `loc` and the fit named on every model."""

import numpy as np
import pytest

from coders.models import Codebooks, build_model, empirical_entropy, parse_spec
from coders.quantizers import EntropyConstrainedQuantizer, LloydMaxQuantizer, UniformQuantizer

QUANTIZERS = [UniformQuantizer(scale_mult=0.25), UniformQuantizer(scale_mult=2.0),
              UniformQuantizer(scale_mult=0.5, stochastic=True),
              UniformQuantizer(scale_mult=0.5, block_size=128),
              EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.2), LloydMaxQuantizer(8, family="gennorm")]
TOL = 1e-5
"""Relative: GenNorm(beta=1) and Laplace tables come from two scipy implementations."""


def _layers(captured, resnet_grads, min_n=4000):
    for name, cap in captured.items():
        for layer in cap.layers:
            x = np.asarray(cap.get(layer, cap.steps[-1]), dtype=np.float32).ravel()
            if x.size >= min_n:
                yield f"{name}/{layer}", x
    for layer, x in resnet_grads.items():
        if x.size >= min_n:
            yield f"resnet/{layer}", x.astype(np.float32)


def _total_bits(m, s):
    return m.ideal_bits(s) + m.side_bits


def test_nesting_holds_on_real_gradients_for_every_quantizer(captured, resnet_grads):
    checked = 0
    for label, x in _layers(captured, resnet_grads):
        for q in QUANTIZERS:
            qz = q.quantize(x)
            s = qz.symbols
            cb = Codebooks(qz, q.normalize(x))
            m = {f: cb.model(f) for f in ("normal", "laplace", "gennorm", "zi-gennorm", "zi-laplace")}
            ce = {f: v.cross_entropy(s) for f, v in m.items()}
            where = f"{label} {q.name}"
            # GenNorm contains Laplace (beta 1) exactly and Normal (beta 2) up to bf16 rounding of the
            # scale; a zero-inflated family contains its base (pi = 0) exactly
            assert ce["gennorm"] <= ce["laplace"] * (1 + TOL), where
            assert ce["gennorm"] <= ce["normal"] * (1 + 2e-3), where
            assert ce["zi-gennorm"] <= ce["gennorm"] * (1 + TOL), where
            assert ce["zi-laplace"] <= ce["laplace"] * (1 + TOL), where
            # with side information: one more bf16 parameter at most
            assert _total_bits(m["gennorm"], s) <= min(_total_bits(m["laplace"], s) * (1 + TOL),
                                                       _total_bits(m["normal"], s) * (1 + 2e-3)) + 16, where
            assert _total_bits(m["zi-gennorm"], s) <= _total_bits(m["gennorm"], s) * (1 + TOL) + 16, where
            checked += 1
    assert checked >= 40


def _gap(x, mult, family="zi-gennorm"):
    q = UniformQuantizer(scale_mult=mult)
    qz = q.quantize(x)
    m = build_model(family, qz, q.normalize(x))
    return _total_bits(m, qz.symbols) / (empirical_entropy(qz.symbols) * x.size) - 1


@pytest.mark.parametrize("mult", [0.25, 0.5, 1.0, 2.0])
def test_zero_inflated_gennorm_within_2_percent_of_entropy_on_large_layers(captured, resnet_grads, mult):
    gaps = {}
    for name, cap in captured.items():
        for layer in cap.layers:
            for step in cap.steps:
                x = np.asarray(cap.get(layer, step), dtype=np.float32).ravel()
                if x.size >= 10_000:
                    gaps[f"{name}/{layer}@{step}"] = _gap(x, mult)
    for layer, x in resnet_grads.items():
        if x.size >= 10_000:
            gaps[f"resnet/{layer}"] = _gap(x, mult)
    assert len(gaps) >= 12 and max(gaps.values()) < 0.02, gaps


def test_gpt2_built_from_a_config():
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=64)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 256, (8, 32))
    model(ids, labels=ids).loss.backward()
    grads = {n: p.grad.detach().numpy().ravel() for n, p in model.named_parameters() if p.grad is not None}
    big = {n: g for n, g in grads.items() if g.size >= 10_000}
    assert big
    for n, x in big.items():
        assert _gap(x, 0.5) < 0.02, n
        assert _gap(x, 0.5, "gennorm") <= min(_gap(x, 0.5, "laplace"), _gap(x, 0.5, "normal")) + 1e-3, n


def test_codelength_beats_the_continuous_fit_on_zero_heavy_layers(captured):
    cap = captured["digits-cnn"]
    x = np.asarray(cap.get("fc1.weight", cap.steps[-1]), dtype=np.float32).ravel()
    assert np.mean(x == 0) > 0.2  # dead units
    q = UniformQuantizer(scale_mult=0.5)
    qz = q.quantize(x)
    code = build_model("gennorm", qz, q.normalize(x))
    cont = build_model("gennorm:values", qz, q.normalize(x))
    assert code.fit == "codelength" and cont.fit == "values"
    assert any("beta_at_lower_bound" in f for f in cont.flags) and code.flags == ()
    h = empirical_entropy(qz.symbols)
    assert code.cross_entropy(qz.symbols) < 1.05 * h < cont.cross_entropy(qz.symbols)


def test_loc_is_held_where_asked():
    x = np.random.default_rng(0).laplace(0.3, 1.0, 20_000)
    q = UniformQuantizer(scale_mult=0.5)
    qz = q.quantize(x)
    for fit in ("codelength", "values"):
        held = build_model("gennorm", qz, x, fit=fit, loc=0.0)
        free = build_model("gennorm", qz, x, fit=fit)
        assert held.params["loc"] == 0.0 and free.params["loc"] == pytest.approx(0.3, abs=0.05)
        assert held.cross_entropy(qz.symbols) > free.cross_entropy(qz.symbols)
    with pytest.raises(ValueError, match="loc must be"):
        Codebooks(qz, x, loc="median")


def test_spec_names_the_fit():
    assert parse_spec("gennorm") == ("gennorm", "codelength")
    assert parse_spec("zi-gennorm:values") == ("zi-gennorm", "values")
    assert parse_spec("t", default_fit="values") == ("t", "values")
    with pytest.raises(ValueError, match="unknown fit 'moments'.*codelength, values"):
        parse_spec("gennorm:moments")


def test_nested_fits_are_made_once_and_shared():
    x = np.random.default_rng(1).laplace(size=8000)
    q = UniformQuantizer(scale_mult=0.5)
    cb = Codebooks(q.quantize(x), q.normalize(x))
    cb.model("zi-gennorm")
    assert set(cb.fits) == {"zi-gennorm", "gennorm", "laplace", "normal"}
    before = {k: v.evaluations for k, v in cb.fits.items()}
    cb.model("gennorm")
    cb.model("laplace")
    assert {k: v.evaluations for k, v in cb.fits.items()} == before
