"""coders.floatcodec.plane_code: each plane the exact smallest of raw / constant / ANS, exact bit counts."""

import numpy as np
import pytest
import scipy.stats
import torch
from floatcodec_bits import DTYPES, assert_same_bits

import coders.floatcodec.plane_code as plane_code
from coders.entropy.bitpack import pack_bits, unpack_bits
from coders.floatcodec import FORMATS, decode_float, encode_float, float_code_length, split_planes
from coders.models import elias_gamma_bits, elias_gamma_pack


@pytest.mark.parametrize("width", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_raw_plane_packing_is_the_msb_first_bit_string(width, n):
    p = np.random.default_rng(width * 1000 + n).integers(0, 1 << width, n).astype(np.uint8)
    packed = plane_code.pack_plane(p, width)
    bits = np.unpackbits(p.reshape(-1, 1), axis=1)[:, 8 - width :].ravel()
    assert packed == np.packbits(bits).tobytes()
    # the same bytes as the project's general packer (a fixed-width fast path of it)
    assert packed == pack_bits(p, np.full(n, width))[0].tobytes()
    np.testing.assert_array_equal(plane_code.unpack_plane(packed, width, n), p)
    np.testing.assert_array_equal(unpack_bits(packed, width, n), p)


def test_plane_entropy_is_scipys():
    counts = np.bincount(np.random.default_rng(0).integers(0, 9, 1000), minlength=256)
    assert plane_code.plane_entropy(counts) == pytest.approx(scipy.stats.entropy(counts[counts > 0], base=2))
    assert plane_code.plane_entropy(np.eye(1, 256, 3).ravel() * 5) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_and_zero_tensors_cost_only_the_header(dtype):
    for value in (0.0, -0.0, 1.5):
        x = torch.full((64, 64), value, dtype=FORMATS[dtype].torch_dtype)
        info = float_code_length(x)
        assert info["mode"] == "planes" and info["payload_bits"] == 0
        assert {p["coder"] for p in info["planes"] if p["n"]} == {"constant"}
        assert_same_bits(decode_float(encode_float(x)), x)


def test_multi_chunk_planes(monkeypatch):
    """Planes longer than CHUNK are cut into several ANS streams (decoded back in order)."""
    monkeypatch.setattr(plane_code, "CHUNK", 1000)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(0, 1e-2, 5500).astype(np.float32))
    for dtype in DTYPES:
        t = x.to(FORMATS[dtype].torch_dtype)
        info = float_code_length(t)
        exp = next(p for p in info["planes"] if p["plane"] == "exponent")
        assert exp["coder"] == "ans" and exp["header_bits"] == 8 + 8 * 4 * 6  # mode byte + 6 word counts
        assert_same_bits(decode_float(encode_float(t)), t)


def test_bits_are_exact_and_match_independent_counts():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.laplace(0, 1e-3, (300, 100)).astype(np.float32)).to(torch.bfloat16)
    blob = encode_float(x)
    info = float_code_length(x)
    assert info["bits"] == 8 * len(blob) == info["payload_bits"] + info["side_bits"] + info["header_bits"]
    assert info["bits_per_entry"] == pytest.approx(8 * len(blob) / x.numel())
    assert info["raw_bits"] == 16 * x.numel()
    exp = split_planes(x)["exponent"]
    e = next(p for p in info["planes"] if p["plane"] == "exponent")
    assert e["coder"] == "ans"
    # side: lo, hi (8 bits each) + Elias-gamma(count + 1) of lo .. hi-1, padded to a byte
    counts = np.bincount(exp, minlength=256)
    lo, hi = int(exp.min()), int(exp.max())
    assert e["side_bits"] == 16 + 8 * -(-int(elias_gamma_bits(counts[lo:hi] + 1).sum()) // 8)
    # payload: constriction's own count of the same plane under the same categorical model
    import constriction

    model = constriction.stream.model.Categorical(counts[lo : hi + 1] / exp.size, perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse((exp.astype(np.int32) - lo), model)
    assert e["payload_bits"] == coder.num_bits()
    # entropy: scipy's, of each plane; the coded plane pays at most a few bits over n * H
    assert e["entropy"] == pytest.approx(scipy.stats.entropy(counts[counts > 0], base=2), rel=1e-12)
    assert exp.size * e["entropy"] <= e["payload_bits"] <= exp.size * e["entropy"] * 1.001 + 64


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_plane_takes_the_smaller_of_raw_and_ans(dtype):
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(0, 1e-3, 40000).astype(np.float32)).to(FORMATS[dtype].torch_dtype)
    info = float_code_length(x)
    by_name = {p["plane"]: p for p in info["planes"]}
    # gaussian exponents are skewed: coded; the low mantissa byte is uniform: raw
    assert by_name["exponent"]["coder"] == "ans"
    low = "mantissa_lo" if dtype != "bf16" else "sign_mantissa"
    assert by_name[low]["coder"] == "raw"
    for p in info["planes"]:
        raw_bits = 8 * -(-p["n"] * p["width"] // 8)
        assert p["payload_bits"] + p["side_bits"] <= raw_bits
        if p["coder"] == "ans":
            assert p["payload_bits"] + p["side_bits"] < raw_bits


@pytest.mark.parametrize("case", ["uniform", "uniform_trailing_run", "skewed", "two_values"])
def test_plane_choice_is_the_exact_smaller_size(case):
    """`code_plane` against brute force: raw bytes vs the ANS section actually built by constriction."""
    import constriction

    rng = np.random.default_rng(8)
    n = 200_000
    p = rng.integers(0, 256, n).astype(np.uint8)
    if case == "uniform_trailing_run":  # the free run of the first symbol (ANS state 0) must count
        p[p == 0] = 1
        p[-3000:] = 0
    elif case == "skewed":
        p = np.clip(rng.normal(120, 2, n), 0, 255).astype(np.uint8)
    elif case == "two_values":
        p = (rng.random(n) < 0.5).astype(np.uint8) * 7
    counts = np.bincount(p, minlength=256)
    blob, code = plane_code.code_plane(p, counts, "x", 8)
    lo, hi = int(np.flatnonzero(counts)[0]), int(np.flatnonzero(counts)[-1])
    model = constriction.stream.model.Categorical(counts[lo : hi + 1] / n, perfect=False)
    enc = constriction.stream.stack.AnsCoder()
    enc.encode_reverse(p.astype(np.int32) - lo, model)
    ans_bytes = 2 + len(elias_gamma_pack(counts[lo:hi] + 1)) + 4 + 4 * enc.get_compressed().size
    assert len(blob) == 1 + min(n, ans_bytes)
    assert code.coder == ("ans" if ans_bytes < n else "raw")
    assert code.coder == {"uniform": "raw"}.get(case, "ans")
    back, off = plane_code.decode_plane(blob, 0, n, 8)
    assert off == len(blob)
    np.testing.assert_array_equal(back, p)


def test_histogram_counts_beyond_the_plane_are_corrupt():
    """An ans section whose Elias-gamma counts exceed n + 1 fails as a corrupt blob, not in constriction."""
    section = bytes([1, 0, 1]) + elias_gamma_pack(np.array([50]))  # count 49 of 10 entries
    with pytest.raises(ValueError, match="decode_float: blob is truncated or corrupt"):
        plane_code.decode_plane(section, 0, 10, 8)
