"""coders.floatcodec.planes: the planes are the IEEE fields, the join inverts the split on any bits."""

import numpy as np
import pytest
import torch
from floatcodec_bits import DTYPES, assert_same_bits, from_bits, special_bits

from coders.floatcodec import FORMATS, join_planes, split_planes, sub_planes


@pytest.mark.parametrize("dtype", DTYPES)
def test_planes_are_the_ieee_fields_and_join_inverts_split(dtype):
    fmt = FORMATS[dtype]
    rng = np.random.default_rng(9)
    b = rng.integers(0, 1 << fmt.bits, 5000, dtype=np.uint64)
    b[: len(special_bits(dtype))] = special_bits(dtype)
    x = from_bits(b, dtype, (50, 100))
    planes = split_planes(x)
    assert list(planes) == [name for name, _ in fmt.planes]
    exp_lo, exp_w = {"bf16": (7, 8), "fp16": (10, 5), "fp32": (23, 8)}[dtype]
    np.testing.assert_array_equal(planes["exponent"], (b >> np.uint64(exp_lo)) & np.uint64((1 << exp_w) - 1))
    # the sign is the top bit of the plane after the exponent
    sign = b >> np.uint64(fmt.bits - 1)
    second = fmt.planes[1][0]
    np.testing.assert_array_equal(planes[second] >> (fmt.plane_width(1) - 1), sign)
    for device in (None, "cpu"):  # numpy join and the torch join (the one CUDA runs)
        assert_same_bits(join_planes(list(planes.values()), fmt, x.shape, device), x)


def test_sub_planes_split_by_zero_exponent_on_host_and_device_path():
    x = torch.tensor([0.0, 1.0, -0.0, 1e-40, 2.0, -3.0], dtype=torch.float32)
    fmt = FORMATS["fp32"]
    host = sub_planes(x, fmt)
    dev = sub_planes(x, fmt, on_device=True)
    assert [n for n, _, _ in host] == ["exponent", "sign_mantissa_hi", "sign_mantissa_hi@exponent0",
                                       "mantissa_mid", "mantissa_mid@exponent0", "mantissa_lo",
                                       "mantissa_lo@exponent0"]
    for (_, wa, a), (_, wb, b) in zip(host, dev, strict=True):
        assert wa == wb
        np.testing.assert_array_equal(np.asarray(a), b.numpy())
    # 0.0, -0.0 and the subnormal have exponent 0: three entries in each @exponent0 plane
    assert [len(v) for _, _, v in host[1:3]] == [3, 3]
    # sign and mantissa bits 22:16: 0.0 -> 0, -0.0 -> the sign alone, 1e-40 (0x000116C2) -> 1
    np.testing.assert_array_equal(host[2][2], [0, 0x80, 1])
