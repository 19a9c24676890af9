"""MSB-first bit packing."""

import numpy as np

from coders.entropy import (
    pack_bits,
    unpack_bits,
)

CODERS = ["ans", "range", "huffman", "zstd-3"]


def test_pack_unpack_bits():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 2**63, size=1000, dtype=np.uint64)
    for w in (1, 7, 32, 33, 63, 64):
        vals = v & np.uint64((1 << w) - 1) if w < 64 else v
        data, total = pack_bits(vals, np.full(vals.size, w))
        assert total == w * vals.size and data.size == -(-total // 8)
        np.testing.assert_array_equal(unpack_bits(data.tobytes(), w, vals.size), vals)
    # variable lengths, MSB first: 1 (1 bit), 0b10 (2 bits), 0b1 (3 bits) -> 1 10 001 -> 0b11000100
    data, total = pack_bits(np.array([1, 2, 1], dtype=np.uint64), np.array([1, 2, 3]))
    assert total == 6 and data.tobytes() == bytes([0b11000100])
