"""Wire widths and bf16 rounding (ties to even), against torch's bfloat16 conversion."""

import numpy as np
import torch

from coders.wire import BF16_BITS, FLOAT32_BITS, bf16, round_bf16


def test_round_bf16_matches_torch():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.standard_normal(10_000) * 10.0 ** rng.integers(-30, 30, 10_000),
                        [0.0, -0.0, 1.0, 1.00390625, 1.01171875]]).astype(np.float32)
    ref = torch.from_numpy(a).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(round_bf16(a), ref)
    assert bf16(1.00390625) == 1.0 and bf16(1.01171875) == 1.015625  # ties go to the even mantissa
    assert (BF16_BITS, FLOAT32_BITS) == (16, 32)
