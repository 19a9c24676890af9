"""Coders by name: each name gives its `Coder`, every coder roundtrips a chunk and counts it exactly."""

import numpy as np
import pytest

from coders.entropy import CODER_TYPES, CODERS, Coder, coder_kind, make_coder
from coders.models import histogram_model


@pytest.mark.parametrize("name", list(CODERS) + ["zstd"])
def test_names_build_coders_that_roundtrip_one_chunk(name):
    c = make_coder(name)
    assert isinstance(c, Coder) and isinstance(c, CODER_TYPES[c.name])
    s = np.random.default_rng(0).integers(-5, 6, 5000)
    m = histogram_model(s)
    values = (s - m.lo).astype(np.int32) if c.uses_model else s.astype(np.int8)
    data = c.encode_chunk(values, m if c.uses_model else None)
    out = c.decode_chunk(data, m if c.uses_model else None, s.size, values.dtype)
    np.testing.assert_array_equal(out, values)
    bits = c.chunk_bits(values, m if c.uses_model else None)
    assert 0 < bits <= 8 * len(data) and bits > 8 * len(data) - 40


def test_zstd_levels_and_unknown_names():
    assert make_coder("zstd-19").level == 19 and make_coder("zstd").level == 3
    assert coder_kind("ZSTD-7") == "zstd" and coder_kind("huffman") == "huffman"
    for bad in ("zstd-0", "zstd-23", "zstd-x", "lz4"):
        with pytest.raises(ValueError, match="unknown coder"):
            make_coder(bad)
    with pytest.raises(ValueError, match="must be a name"):
        make_coder(3)
