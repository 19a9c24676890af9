"""Entropy coders for integer symbols under a `ProbabilityModel`: ANS, range, Huffman; zstd baseline.

- `ans.py`: asymmetric numeral systems (Duda 2009) via constriction's `AnsCoder`;
- `range.py`: range coding (Martin 1979) via constriction's `RangeEncoder`; both with
  `constriction.stream.model.Categorical(probs, perfect=False)` (24-bit probabilities,
  `categorical.py`);
- `huffman.py`: canonical, length-limited Huffman code (Huffman 1952; RFC 1951), lane-parallel;
- `zstd.py`: zstandard on the symbol bytes (model ignored); `zstd_raw_bits` on raw float32 / bf16.

Each is a `Coder` (`base.py`: encode / decode / exact length of one chunk), built by name in
`registry.py`; `container.py` is the blob format; `stream.py` codes a whole stream:
`encode(symbols, model, coder) -> bytes`, `decode(blob, model, n, coder) -> np.int64 symbols`,
`code_length(symbols, model, coder) -> bits` (payload + escape section + model side bits);
`encode_counted` (the blob and its bits from one encode), `huffman_size` (a Huffman blob's bits
and bytes from the symbol histogram, no stream built), `table_indices` (a model's indices, shared).
`decode` raises `CorruptBlobError` (a ValueError) for any blob it cannot decode; a blob's crc32
catches corruption first. `framing_bits(blob)`: what `code_length` does not count.
"""

from coders.entropy.base import Coder
from coders.entropy.bitpack import pack_bits, unpack_bits
from coders.entropy.container import CorruptBlobError, framing_bits
from coders.entropy.huffman import (
    HUFFMAN_LANE,
    HUFFMAN_MAX_LEN,
    HuffmanCode,
    canonical_huffman,
    huffman_code,
    huffman_lengths,
)
from coders.entropy.registry import CODER_TYPES, CODERS, coder_kind, make_coder
from coders.entropy.stream import (
    DEFAULT_CHUNK,
    code_length,
    coded_cross_entropy,
    decode,
    decode_prefix,
    encode,
    encode_counted,
    huffman_lane_bits,
    huffman_size,
    huffman_window_size,
    sample_window,
    table_indices,
)
from coders.entropy.zstd import zstd_raw_bits

__all__ = [
    "CODERS", "CODER_TYPES", "Coder", "CorruptBlobError", "DEFAULT_CHUNK", "HUFFMAN_LANE", "HUFFMAN_MAX_LEN",
    "HuffmanCode", "canonical_huffman", "code_length", "coded_cross_entropy", "coder_kind", "decode",
    "decode_prefix", "huffman_lane_bits", "huffman_window_size", "sample_window",
    "encode", "encode_counted", "framing_bits", "huffman_code", "huffman_size", "table_indices",
    "huffman_lengths", "make_coder", "pack_bits", "unpack_bits", "zstd_raw_bits",
]
