"""EntropyCodec: the receiver rebuilds the sender's quantized values exactly from the message bytes."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
import torch

from coders.compressors.entropy_coded import CODERS, MODELS, EntropyCodec
from coders.compressors.qsgd import QSGD, QSGDLevels
from coders.entropy import encode
from coders.quantizers import UniformQuantizer
from coders.report import bits_per_entry


def _gradient(n: int = 12_000, seed: int = 0) -> torch.Tensor:
    """Heavy-tailed, gradient-like values with some exact zeros (as dead units give)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * torch.rand(n, generator=g) ** 2 * 1e-3
    x[torch.rand(n, generator=g) < 0.05] = 0.0
    return x


def _quantizer(kind: str, block_size, seed: int):
    if kind == "qsgd":
        return QSGDLevels(16, 512, seed=seed)
    return UniformQuantizer(scale_mult=0.5, block_size=block_size, stochastic=kind == "stochastic", seed=seed)


CASES = [(q, m, c, b) for q, m, c, b in itertools.product(("uniform", "stochastic", "qsgd"), MODELS, CODERS,
                                                         (None, 1000)) if not (q == "qsgd" and b)]


@pytest.mark.parametrize("quantizer,model,coder,block_size", CASES)
def test_receiver_rebuilds_the_quantizer_output_exactly(quantizer, model, coder, block_size):
    x = _gradient()
    codec = EntropyCodec(quantizer, model=model, coder=coder, block_size=block_size)
    msg, x_hat, info = codec.encode(x, codec.sender(seed=7))
    # the sender's x_hat is exactly what the quantizer alone gives (same seed, first call)
    expected = _quantizer(quantizer, block_size, 7).quantize(x).dequantize()
    assert torch.equal(x_hat, expected)
    # a fresh receiver decodes from the bytes alone
    out = codec.decode(msg.clone(), codec.receiver(), x.shape)
    assert torch.equal(out, x_hat)
    assert msg.dtype == torch.uint8 and msg.numel() == info["side_bytes"] + info["coded_bytes"]


def test_message_layout_is_what_the_docstring_says():
    x = _gradient(5000)
    codec = EntropyCodec("uniform", model="gennorm", coder="ans", block_size=1000)
    sender = codec.sender(0)
    msg, _, info = codec.encode(x, sender)
    q = UniformQuantizer(scale_mult=0.5, block_size=1000).quantize(x)
    buf = msg.numpy().tobytes()
    assert buf[0] == 1  # a model follows
    assert struct.unpack_from("<f", buf, 1)[0] == q.step
    # flags + step + 5 bf16 block scales + (lo, size) + 3 bf16 GenNorm parameters
    assert info["side_bytes"] == 1 + 4 + 2 * 5 + 8 + 2 * 3
    assert buf[info["side_bytes"]:] == encode(q.symbols, sender.model, "ans")


@pytest.mark.parametrize("model", ["gennorm", "histogram"])
def test_refresh_every_k_sends_the_model_only_on_refits(model):
    codec = EntropyCodec("stochastic", model=model, refresh=3)
    sender, receiver = codec.sender(1), codec.receiver()
    sent = []
    for t in range(7):
        x = _gradient(seed=t) * (1 + t)
        msg, x_hat, info = codec.encode(x, sender)
        sent.append(info["model_sent"])
        assert bool(msg[0]) == info["model_sent"]
        assert torch.equal(codec.decode(msg, receiver, x.shape), x_hat)
    assert sent == [True, False, False, True, False, False, True]
    # a receiver that missed the model cannot decode a message without one
    msg, _, info = codec.encode(_gradient(), sender)
    assert not info["model_sent"]
    with pytest.raises(ValueError, match="no model"):
        codec.decode(msg, codec.receiver(), (12_000,))


def test_refresh_once_pays_the_side_information_once():
    codec = EntropyCodec("uniform", model="histogram", refresh="once")
    sender, receiver = codec.sender(0), codec.receiver()
    sides = []
    for t in range(4):
        x = _gradient(seed=t)
        msg, x_hat, info = codec.encode(x, sender)
        sides.append(info["side_bytes"])
        assert torch.equal(codec.decode(msg, receiver, x.shape), x_hat)
    assert sides[0] > sides[1] == sides[2] == sides[3] == 1 + 4  # later: flags + step only


@pytest.mark.parametrize("quantizer", ["uniform", "stochastic", "qsgd"])
@pytest.mark.parametrize("model,coder", [("gennorm", "ans"), ("zi-gennorm", "huffman"), ("laplace", "ans"),
                                         ("histogram", "huffman")])
def test_message_bits_within_two_percent_of_bits_per_entry(quantizer, model, coder):
    """8 x the bytes sent vs bits_per_entry's total for the same gradient, quantizer and model."""
    from captures import make_workload

    wl = make_workload("digits-cnn", seed=0)
    wl.loss(wl.model, next(wl.batches(0, 1))).backward()
    x = torch.cat([p.grad.reshape(-1) for p in wl.model.parameters()])
    codec = EntropyCodec(quantizer, model=model, coder=coder, block_size=4096)
    msg, _, _ = codec.encode(x, codec.sender(3))
    ref = bits_per_entry(x, _quantizer(quantizer, 4096, 3), models=[model], coders=[coder])
    expected = float(ref["total_bits"].iloc[0])
    assert 8 * msg.numel() == pytest.approx(expected, rel=0.02)
    assert 8 * msg.numel() > expected  # the container (blob header, fixed-width ranges) is real cost


def test_qsgd_levels_match_the_qsgd_operator():
    """QSGDLevels draws the same levels as the QSGD compressor and reconstructs the same values."""
    x = _gradient(3000)
    op = QSGD(16, 512, seed=5)
    want = op.decompress(op.compress(x, {}))
    got = QSGDLevels(16, 512, seed=5).quantize(x).dequantize()
    assert torch.equal(got, want)


@pytest.mark.parametrize("bad,match", [({"quantizer": "lloyd"}, "quantizer"), ({"model": "t"}, "model"),
                                       ({"coder": "zstd"}, "coder"), ({"refresh": 0}, "refresh"),
                                       ({"refresh": "daily"}, "refresh"), ({"scale_mult": 0}, "scale_mult")])
def test_bad_options_name_the_value(bad, match):
    with pytest.raises(ValueError, match=match):
        EntropyCodec(**bad)


def test_all_zero_gradient_round_trips():
    x = torch.zeros(2000)
    for q in ("uniform", "qsgd"):
        codec = EntropyCodec(q, model="histogram")
        msg, x_hat, _ = codec.encode(x, codec.sender(0))
        assert torch.equal(codec.decode(msg, codec.receiver(), x.shape), x_hat)
        assert not x_hat.any()
    assert np.isfinite(x_hat.numpy()).all()


def test_elias_gamma_round_trip_and_lengths():
    from coders.models import elias_gamma_bits, elias_gamma_pack, elias_gamma_unpack

    v = np.array([1, 2, 3, 4, 7, 8, 255, 256, 10**6, 2**40 + 5, 1], dtype=np.int64)
    blob = elias_gamma_pack(v)
    assert len(blob) == (int(elias_gamma_bits(v).sum()) + 7) // 8
    assert elias_gamma_pack(np.array([1, 2])) == bytes([0b1010_0000])  # "1" then "010"
    got, used = elias_gamma_unpack(b"\xff" + blob + b"\x00\x01", v.size, offset=1)
    assert np.array_equal(got, v) and used == len(blob)
    with pytest.raises(ValueError, match="ends early"):
        elias_gamma_unpack(blob[:-2], v.size)
