"""coders.floatcodec.blob: exact roundtrip of every bit pattern, never above raw + header, bad blobs
raise one ValueError, the device path gives the same bytes."""

import math
import zlib

import numpy as np
import pytest
import torch
from floatcodec_bits import DTYPES, assert_same_bits, bits_of, from_bits, raw_header_bytes, special_bits
from hypothesis import given, settings
from hypothesis import strategies as st

from coders.entropy import encode
from coders.floatcodec import FORMATS, MAGIC, decode_float, encode_blob, encode_float, float_code_length
from coders.models import histogram_model


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


@settings(max_examples=80)
@given(data=st.data())
def test_forged_crc_over_a_damaged_body_still_raises_one_value_error(data):
    """Past the crc (resealed), a damaged body fails to parse with the blob's ValueError, or decodes."""
    body = _blob()[8:]
    i = data.draw(st.integers(0, len(body) - 1))
    bad = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    try:
        decode_float(MAGIC + zlib.crc32(bad).to_bytes(4, "little") + bad)
    except ValueError as err:
        assert str(err).startswith("decode_float: blob is truncated or corrupt")


def test_foreign_blob_and_forged_crc():
    with pytest.raises(ValueError, match="not a float codec blob"):
        decode_float(encode(np.arange(10), histogram_model(np.arange(10)), "ans"))
    # a well-formed crc over a wrong body still fails to parse, with the same kind of error
    body = bytes([1, 1, 1, 5]) + b"\x09"
    with pytest.raises(ValueError, match="decode_float: blob is truncated or corrupt"):
        decode_float(MAGIC + zlib.crc32(body).to_bytes(4, "little") + body)


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
    blob, info = encode_blob(x, on_device=True)
    assert blob == encode_float(x) and info["bits"] == 8 * len(blob)
    assert_same_bits(decode_float(blob, device="cpu"), x)


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
