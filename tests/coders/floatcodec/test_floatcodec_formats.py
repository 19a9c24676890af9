"""coders.floatcodec.formats: names and dtypes to formats, casts, one-line errors for the rest."""

import numpy as np
import pytest
import torch
from floatcodec_bits import assert_same_bits

from coders.floatcodec import FORMATS, as_float_tensor, decode_float, encode_float, float_format


def test_names_and_dtypes_give_one_format():
    for spec, name in [("bf16", "bf16"), ("bfloat16", "bf16"), ("HALF", "fp16"), ("float", "fp32"),
                       (torch.bfloat16, "bf16"), (torch.float16, "fp16"), (np.float32, "fp32"),
                       (np.dtype(np.float16), "fp16")]:
        assert float_format(spec) is FORMATS[name]
    for fmt in FORMATS.values():
        # the planes partition the format's bits: every bit in exactly one field
        fields = [b for _, fs in fmt.planes for lo, w in fs for b in range(lo, lo + w)]
        assert sorted(fields) == list(range(fmt.bits))
        assert all(fmt.plane_width(i) <= 8 for i in range(len(fmt.planes)))


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
    with pytest.raises(ValueError, match="complex"):
        as_float_tensor(torch.zeros(3, dtype=torch.complex64), "bf16")
    assert decode_float(encode_float(a32.astype(np.float64), "fp32")).dtype == torch.float32
