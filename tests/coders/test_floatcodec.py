"""coders.floatcodec: exact roundtrip of every bit pattern, exact bit counts, never above raw + header,
below zstd -19 on the bf16 gradients of the built-in workloads."""

import math
import zlib

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import coders.floatcodec as fc
from coders.entropy import encode, zstd_raw_bits
from coders.floatcodec import (
    FORMATS,
    decode_float,
    encode_float,
    float_code_length,
    raw_float_rows,
    split_planes,
)
from coders.models import elias_gamma_bits, histogram_model
from coders.report import COLUMNS, bits_per_entry

DTYPES = ("bf16", "fp16", "fp32")
UINT = {16: np.uint16, 32: np.uint32}
SINT = {16: np.int16, 32: np.int32}


def from_bits(bits, dtype: str, shape=None) -> torch.Tensor:
    """The tensor of `dtype` whose bit patterns are `bits` (unsigned ints)."""
    fmt = FORMATS[dtype]
    a = np.asarray(bits, dtype=np.uint64).astype(UINT[fmt.bits]).view(SINT[fmt.bits])
    t = torch.from_numpy(a.copy()).view(fmt.torch_dtype)
    return t.reshape(shape) if shape is not None else t


def bits_of(t: torch.Tensor) -> np.ndarray:
    fmt = fc.float_format(t.dtype)
    return t.reshape(-1).view(fmt.int_dtype).cpu().numpy().view(UINT[fmt.bits])


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
    np.testing.assert_array_equal(bits_of(a), bits_of(b))


def raw_header_bytes(shape) -> int:
    """magic + crc + dtype + mode + ndim + LEB128 dims: what a raw blob adds to the raw bytes."""
    return 4 + 4 + 3 + sum(max(1, -(-int(d).bit_length() // 7)) for d in shape)


def special_bits(dtype: str) -> list[int]:
    """NaN payloads (quiet, signalling, negative), +-0, +-Inf, smallest/largest subnormals, max normal."""
    if FORMATS[dtype].bits == 32:
        return [0x7FC00000, 0x7FA00001, 0xFFFFFFFF, 0x7F800001, 0x80000000, 0x00000000, 0x7F800000,
                0xFF800000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x00800000]
    if dtype == "bf16":
        return [0x7FC0, 0x7FC1, 0xFFFF, 0x7F81, 0x8000, 0x0000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x7F7F,
                0x0080]
    return [0x7E00, 0x7E01, 0xFFFF, 0x7C01, 0x8000, 0x0000, 0x7C00, 0xFC00, 0x0001, 0x83FF, 0x7BFF, 0x0400]


# ----------------------------------------------------------------------------------------------
# roundtrip


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60)
@given(data=st.data())
def test_roundtrip_any_bit_patterns(dtype, data):
    width = FORMATS[dtype].bits
    pattern = st.integers(0, (1 << width) - 1)
    # a small pool drawn with repeats makes skewed planes (ANS, constant); free draws make raw planes
    pool = data.draw(st.lists(pattern, min_size=1, max_size=6))
    bits = data.draw(st.one_of(st.lists(pattern, max_size=200),
                               st.lists(st.sampled_from(pool), max_size=3000)))
    x = from_bits(bits, dtype)
    blob = encode_float(x)
    assert_same_bits(decode_float(blob), x)
    assert len(blob) <= raw_header_bytes(x.shape) + x.numel() * width // 8


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_roundtrip_through_the_planes(dtype):
    """NaN payloads, -0.0, Inf and subnormals inside a compressible tensor (planes mode, ANS planes)."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.laplace(0, 1e-3, 20000).astype(np.float32)).to(FORMATS[dtype].torch_dtype)
    b = bits_of(x).astype(np.uint64)
    sp = np.array(special_bits(dtype), dtype=np.uint64)
    b[rng.choice(b.size, 400, replace=False)] = np.resize(sp, 400)
    x = from_bits(b, dtype, (100, 200))
    blob = encode_float(x)
    info = float_code_length(x)
    assert info["mode"] == "planes" and "ans" in {p["coder"] for p in info["planes"]}
    back = decode_float(blob)
    assert_same_bits(back, x)
    # the specials decode to what they are, not only to the same bits
    assert torch.isnan(back).sum() == torch.isnan(x).sum() > 0
    assert (torch.signbit(back) & (back == 0)).sum() > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (1,), (7,), (2, 3, 1, 4)])
def test_small_and_empty_shapes(dtype, shape):
    n = math.prod(shape)
    x = from_bits(np.resize(np.array(special_bits(dtype), dtype=np.uint64), n), dtype, shape)
    blob = encode_float(x)
    back = decode_float(blob)
    assert_same_bits(back, x)
    assert len(blob) <= raw_header_bytes(shape) + n * FORMATS[dtype].bits // 8
    info = float_code_length(x)
    assert info["n"] == n and info["bits"] == 8 * len(blob)


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
    monkeypatch.setattr(fc, "CHUNK", 1000)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(0, 1e-2, 5500).astype(np.float32))
    for dtype in DTYPES:
        t = x.to(FORMATS[dtype].torch_dtype)
        info = float_code_length(t)
        exp = next(p for p in info["planes"] if p["plane"] == "exponent")
        assert exp["coder"] == "ans" and exp["header_bits"] == 8 + 8 * 4 * 6  # mode byte + 6 word counts
        assert_same_bits(decode_float(encode_float(t)), t)


def test_numpy_input_and_casts():
    rng = np.random.default_rng(2)
    a32 = rng.normal(size=(50, 3)).astype(np.float32)
    for a in (a32, a32.astype(np.float16)):
        back = decode_float(encode_float(a))
        np.testing.assert_array_equal(back.numpy().view(np.uint8), a.view(np.uint8))
    # a cast is round to nearest even, as torch's .to
    t = torch.from_numpy(a32)
    assert_same_bits(decode_float(encode_float(a32, "bf16")), t.to(torch.bfloat16))
    assert_same_bits(decode_float(encode_float(t, "float16")), t.half())
    with pytest.raises(ValueError, match="bf16, fp16, fp32"):
        encode_float(a32.astype(np.float64))
    with pytest.raises(ValueError, match="bf16, fp16, fp32"):
        encode_float(a32, "fp8")
    with pytest.raises(ValueError, match="bf16, fp16, fp32"):
        encode_float(torch.zeros(3, dtype=torch.int32))
    assert decode_float(encode_float(a32.astype(np.float64), "fp32")).dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# bits


def test_bits_are_exact_and_match_independent_counts():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.laplace(0, 1e-3, (300, 100)).astype(np.float32)).to(torch.bfloat16)
    blob = encode_float(x)
    info = float_code_length(x)
    assert info["bits"] == 8 * len(blob) == info["payload_bits"] + info["side_bits"] + info["header_bits"]
    assert info["bits_per_entry"] == pytest.approx(8 * len(blob) / x.numel())
    assert info["raw_bits"] == 16 * x.numel()
    planes = split_planes(x)
    exp = planes["exponent"]
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


@pytest.mark.parametrize("width", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_raw_plane_packing_is_the_msb_first_bit_string(width, n):
    p = np.random.default_rng(width * 1000 + n).integers(0, 1 << width, n).astype(np.uint8)
    packed = fc._pack_plane(p, width)
    bits = np.unpackbits(p.reshape(-1, 1), axis=1)[:, 8 - width :].ravel()
    assert packed == np.packbits(bits).tobytes()
    np.testing.assert_array_equal(fc._unpack_plane(packed, width, n), p)


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
    """`_code_plane` against brute force: raw bytes vs the ANS section actually built by constriction."""
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
    blob, code = fc._code_plane(p, counts, "x", 8)
    lo, hi = int(np.flatnonzero(counts)[0]), int(np.flatnonzero(counts)[-1])
    model = constriction.stream.model.Categorical(counts[lo : hi + 1] / n, perfect=False)
    enc = constriction.stream.stack.AnsCoder()
    enc.encode_reverse(p.astype(np.int32) - lo, model)
    ans_bytes = 2 + len(fc._gamma_pack(counts[lo:hi] + 1)) + 4 + 4 * enc.get_compressed().size
    assert len(blob) == 1 + min(n, ans_bytes)
    assert code.coder == ("ans" if ans_bytes < n else "raw")
    assert code.coder == {"uniform": "raw"}.get(case, "ans")


@settings(max_examples=40)
@given(bits=st.lists(st.integers(0, (1 << 32) - 1), min_size=0, max_size=400),
       dtype=st.sampled_from(DTYPES))
def test_never_larger_than_raw_plus_header(bits, dtype):
    width = FORMATS[dtype].bits
    x = from_bits(np.array(bits, dtype=np.uint64) % (1 << width), dtype)
    info = float_code_length(x)
    assert info["bits"] <= 8 * raw_header_bytes(x.shape) + width * x.numel()
    if info["mode"] == "raw":
        assert info["payload_bits"] == width * x.numel() and info["side_bits"] == 0


# ----------------------------------------------------------------------------------------------
# bad blobs


def _blob():
    rng = np.random.default_rng(5)
    return encode_float(torch.from_numpy(rng.normal(0, 1, (40, 30)).astype(np.float32)).to(torch.bfloat16))


@settings(max_examples=80)
@given(data=st.data())
def test_corrupted_or_truncated_blob_raises_one_value_error(data):
    blob = _blob()
    kind = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        bad = blob[:i] + bytes([blob[i] ^ data.draw(st.integers(1, 255))]) + blob[i + 1 :]
    elif kind == "truncate":
        bad = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        bad = blob + data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(ValueError, match="decode_float"):
        decode_float(bad)


def test_foreign_blob_and_forged_crc():
    with pytest.raises(ValueError, match="not a float codec blob"):
        decode_float(encode(np.arange(10), histogram_model(np.arange(10)), "ans"))
    # a well-formed crc over a wrong body still fails to parse, with the same kind of error
    body = bytes([1, 1, 1, 5]) + b"\x09"
    with pytest.raises(ValueError, match="decode_float: blob is truncated or corrupt"):
        decode_float(fc.MAGIC + zlib.crc32(body).to_bytes(4, "little") + body)


# ----------------------------------------------------------------------------------------------
# rows for bits_per_entry


def test_raw_float_rows_columns_and_zstd_baseline():
    rng = np.random.default_rng(6)
    x = rng.laplace(0, 1e-3, 5000).astype(np.float32)
    rows = raw_float_rows(x, zstd_levels=(3, 19))
    assert [(r["model"], r["coder"]) for r in rows] == [
        (m, c) for m in ("raw-bf16", "raw-fp16", "raw-float32") for c in ("planes-ans", "zstd-3", "zstd-19")]
    for r in rows:
        assert set(r) <= set(COLUMNS)
        assert r["bits_per_entry"] == pytest.approx(r["payload_bits_per_entry"] + r["side_bits_per_entry"])
        assert r["total_bits"] == r["payload_bits"] + r["side_bits"]
    by = {(r["model"], r["coder"]): r for r in rows}
    # the zstd rows are the same bytes, framing and levels as the baseline of bits_per_entry
    assert by["raw-bf16", "zstd-19"]["payload_bits"] == zstd_raw_bits(x, "bf16", 19)
    assert by["raw-float32", "zstd-3"]["payload_bits"] == zstd_raw_bits(x, "float32", 3)
    # planes-ans: the whole blob
    assert by["raw-bf16", "planes-ans"]["total_bits"] == 8 * len(encode_float(x, "bf16"))
    # lossless for fp32 (input is fp32), the format's rounding error otherwise
    assert by["raw-float32", "planes-ans"]["mse"] == 0.0
    xb = torch.from_numpy(x).bfloat16().double().numpy()
    assert by["raw-bf16", "planes-ans"]["mse"] == pytest.approx(np.mean((xb - x) ** 2), rel=1e-12)
    # they append to bits_per_entry's frame without new columns
    import pandas as pd

    df = bits_per_entry(x, models=("histogram",), coders=("ans",), raw_baselines=True)
    both = pd.concat([df, pd.DataFrame(rows).reindex(columns=COLUMNS)], ignore_index=True)
    assert list(both.columns) == COLUMNS
    assert by["raw-bf16", "planes-ans"]["bits_per_entry"] < by["raw-bf16", "zstd-19"]["bits_per_entry"]


# ----------------------------------------------------------------------------------------------
# real gradients of the built-in workloads


@pytest.fixture(scope="module")
def workload_grads():
    from captures import make_workload

    out = {}
    for name in ("digits-cnn", "stdlib-lm"):
        w = make_workload(name, seed=0)
        for _ in range(3):
            w.step()
        out.update({f"{name}/{n}": p.grad.detach().clone() for n, p in w.model.named_parameters()})
    return out


def test_bf16_planes_beat_zstd19_on_every_dense_layer(workload_grads):
    """Every weight tensor (ndim >= 2: conv, linear, embedding) of both workloads, bf16."""
    dense = {k: g for k, g in workload_grads.items() if g.dim() >= 2}
    assert len(dense) >= 15
    for name, g in dense.items():
        rows = raw_float_rows(g, dtypes=("bf16",), zstd_levels=(19,))
        planes, zstd = rows
        assert planes["coder"] == "planes-ans" and zstd["coder"] == "zstd-19"
        assert planes["bits_per_entry"] < zstd["bits_per_entry"], name


@pytest.mark.parametrize("dtype", DTYPES)
def test_real_gradients_roundtrip_and_stay_under_raw_plus_header(workload_grads, dtype):
    for name, g in workload_grads.items():
        t = g.to(FORMATS[dtype].torch_dtype)
        blob = encode_float(t)
        assert_same_bits(decode_float(blob), t)
        assert len(blob) <= raw_header_bytes(t.shape) + t.numel() * FORMATS[dtype].bits // 8, name


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30)
@given(data=st.data())
def test_device_path_gives_the_same_blob_and_tensor(dtype, data):
    """The torch split / histogram / join that CUDA runs, exercised on the CPU: same bytes, same bits."""
    width = FORMATS[dtype].bits
    pool = data.draw(st.lists(st.integers(0, (1 << width) - 1), min_size=1, max_size=5))
    bits = data.draw(st.lists(st.sampled_from(pool + [0, 1 << (width - 1)]), max_size=2000))
    x = from_bits(bits, dtype)
    blob = encode_float(x)
    assert fc._encode(x, on_device=True)[0] == blob
    assert_same_bits(decode_float(blob, device="cpu"), x)


# ----------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_split_on_device_same_blob(dtype):
    rng = np.random.default_rng(7)
    b = rng.integers(0, 1 << FORMATS[dtype].bits, 30000, dtype=np.uint64)
    b[:20000] = bits_of(torch.from_numpy(rng.normal(0, 1e-3, 20000).astype(np.float32))
                        .to(FORMATS[dtype].torch_dtype)).astype(np.uint64)
    x = from_bits(b, dtype, (300, 100))
    blob = encode_float(x.cuda())
    assert blob == encode_float(x)
    back = decode_float(blob, device="cuda")
    assert back.is_cuda
    assert_same_bits(back.cpu(), x)
