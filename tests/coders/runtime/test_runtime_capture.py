"""train(..., capture=DIR): per worker, what each method compresses (issue 12)."""

from __future__ import annotations

import math

import pytest
import torch

from coders.runtime.capture import location, open_method_capture
from coders.runtime.train import TrainSpec, train, train_many

# the four methods of the issue: low rank, sign of momentum, sparsification with EF, gossip
CAPTURED = [("powersgd", {"rank": 1}), ("signum-mv", {}), ("topk-ef", {"ratio": 0.05}), ("powergossip", {})]
W, STEPS = 2, 3


def _all_records(path) -> dict:
    """{(kind, neighbour, rank, step, layer): tensor} of every record of a capture run."""
    cap = open_method_capture(path)
    out = {}
    for kind in cap.kinds:
        for nb in (cap.neighbours() if kind == "model_diff" else [None]):
            c = cap.capture(kind, nb)
            store_kind = location(kind, nb)[1]
            for rec in c.records(kind=store_kind, as_torch=True):
                out[(kind, nb, rec.rank, rec.step, rec.layer)] = rec.values
    return out


NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, NO_CUDA])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_ef_input_is_gradient_plus_residual(tmp_path, device):
    """topk-ef: input_t = g_t + e_t with e_t = input_{t-1} - topk(input_{t-1}), e_1 = 0 (written out)."""
    ratio = 0.05
    train("digits-cnn", "topk-ef", W, STEPS, seed=1, options={"ratio": ratio}, capture=tmp_path / "c",
          device=device)
    cap = open_method_capture(tmp_path / "c")
    assert cap.kinds == ["grad", "update", "compressor_input"]
    for rank in range(W):
        for layer in cap.root.layers:
            e = None
            for step in range(1, STEPS + 1):
                g = cap.get(layer, step, rank, "grad", as_torch=True)
                x = cap.get(layer, step, rank, "compressor_input", as_torch=True)
                want = g if e is None else g + e
                assert torch.equal(x, want), (rank, layer, step)
                flat = x.reshape(-1)
                kept = torch.topk(flat.abs(), math.ceil(ratio * flat.numel())).indices
                e = flat.clone()
                e[kept] = 0.0
                e = e.reshape(x.shape)


def test_recorded_inputs_are_what_each_method_compresses(tmp_path):
    train("digits-cnn", "signum-mv", W, 2, seed=0, options={"beta": 0.5}, capture=tmp_path / "s")
    cap = open_method_capture(tmp_path / "s")
    for layer in cap.root.layers:  # Signum: m_1 = (1 - b) g_1, m_2 = b m_1 + (1 - b) g_2
        g1, g2 = (cap.get(layer, s, 1, "grad", as_torch=True) for s in (1, 2))
        m1 = torch.zeros_like(g1).mul_(0.5).add_(g1, alpha=0.5)
        torch.testing.assert_close(cap.get(layer, 1, 1, "compressor_input", as_torch=True), m1,
                                   atol=0, rtol=0)
        torch.testing.assert_close(cap.get(layer, 2, 1, "compressor_input", as_torch=True),
                                   m1.mul(0.5).add_(g2, alpha=0.5), atol=0, rtol=0)
    train("digits-cnn", "powersgd", W, 1, seed=0, options={"rank": 1}, capture=tmp_path / "p")
    cap = open_method_capture(tmp_path / "p")
    conv = "conv1.weight" if "conv1.weight" in cap.root.layers else cap.root.layers[0]
    # step 1, no residual yet: M = g for the compressed matrices; vectors are not compressed
    assert torch.equal(cap.get(conv, 1, 0, "compressor_input", as_torch=True), cap.get(conv, 1, 0, "grad",
                                                                                        as_torch=True))
    train("digits-cnn", "ef-signsgd", W, 1, seed=0, lr=0.1, capture=tmp_path / "e")
    cap_e = open_method_capture(tmp_path / "e")
    for layer in cap_e.root.layers:  # EF-signSGD step 1: p = lr m + e with m = g, e = 0
        assert torch.equal(cap_e.get(layer, 1, 0, "compressor_input", as_torch=True),
                           0.1 * cap_e.get(layer, 1, 0, "grad", as_torch=True))
    biases = [name for name in cap.root.layers if len(cap.root.shapes[name]) == 1]
    with pytest.raises(ValueError, match="no 'compressor_input' record|no .* record"):
        cap.get(biases[0], 1, 0, "compressor_input")


def test_gossip_differences_are_antisymmetric_and_capture_leaves_training_unchanged(tmp_path):
    plain = train("digits-cnn", "powergossip", 3, STEPS, seed=2)
    rec = train("digits-cnn", "powergossip", 3, STEPS, seed=2, capture=tmp_path / "g", capture_every=2)
    for a, b in zip(plain.final_params, rec.final_params, strict=True):
        assert torch.equal(a, b)  # the extra exchange and the copies do not touch the model
    cap = open_method_capture(tmp_path / "g")
    assert cap.root.steps == [1, 3]
    assert cap.neighbours(0) == [1, 2] and cap.capture("model_diff", 1).ranks == [0, 2]
    for layer in cap.root.layers:
        for i, j in ((0, 1), (1, 2), (2, 0)):
            for step in (1, 3):
                d_ij = cap.get(layer, step, i, "model_diff", neighbour=j, as_torch=True)
                d_ji = cap.get(layer, step, j, "model_diff", neighbour=i, as_torch=True)
                assert torch.equal(d_ij, -d_ji)
    # all models start equal: no difference at step 1; local steps on different data make them differ
    assert all(not cap.get(layer, 1, 0, "model_diff", neighbour=1).any() for layer in cap.root.layers)
    assert any(cap.get(layer, 3, 0, "model_diff", neighbour=1).any() for layer in cap.root.layers)
    manifest = cap.capture("model_diff", 1).manifest
    assert manifest["extra"]["kind"] == "model_diff" and manifest["extra"]["neighbour"] == 1


def test_capture_sample_keeps_the_same_entries_of_every_kind(tmp_path):
    train("digits-cnn", "topk-ef", W, 2, seed=0, options={"ratio": 0.05}, capture=tmp_path / "full")
    train("digits-cnn", "topk-ef", W, 2, seed=0, options={"ratio": 0.05}, capture=tmp_path / "s",
          capture_sample=50)
    full, sampled = open_method_capture(tmp_path / "full"), open_method_capture(tmp_path / "s")
    for layer in full.root.layers:
        idx = sampled.root.indices(layer)
        numel = math.prod(full.root.shapes[layer])
        assert (idx is None) == (numel <= 50)
        for kind in ("grad", "compressor_input", "update"):
            want = full.get(layer, 2, 1, kind).reshape(-1)
            got = sampled.get(layer, 2, 1, kind)
            assert (got == (want if idx is None else want[idx])).all()
    with pytest.raises(ValueError, match="capture_every"):
        train("digits-cnn", "fp32", W, 1, capture=tmp_path / "x", capture_every=0)


@pytest.mark.distributed
def test_simulator_and_gloo_record_identical_inputs_bit_for_bit(tmp_path):
    specs = [TrainSpec("digits-cnn", m, W, STEPS, seed=4, options=o, capture=str(tmp_path / "gloo" / m))
             for m, o in CAPTURED]
    train_many(specs, backend="gloo")
    for m, o in CAPTURED:
        train("digits-cnn", m, W, STEPS, seed=4, options=o, capture=tmp_path / "sim" / m)
        sim, gloo = _all_records(tmp_path / "sim" / m), _all_records(tmp_path / "gloo" / m)
        assert sim.keys() == gloo.keys() and len(sim) > 0
        kinds = {k[0] for k in sim}
        assert kinds >= {"grad", "update", "model_diff" if m == "powergossip" else "compressor_input"}
        for key, value in sim.items():
            assert torch.equal(value, gloo[key]), f"{m}: {key} differs between the simulator and gloo"
