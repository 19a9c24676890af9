"""Lossless coding of raw bf16 / fp16 / fp32 tensors: exponent and mantissa planes, ANS per plane.

The split of the GPU float codecs (DietGPU's float codec; ZipNN, Hershcovitch et al. 2024): the
exponent of a gradient is highly skewed (a few octaves hold almost every entry) while the low
mantissa bits are close to uniform, so each float is cut into bit planes of at most 8 bits (IEEE
754 fields) and every plane is sent raw, as a constant, or coded with ANS (Duda 2009) under its own
order-0 histogram, whichever is smallest (the exact sizes are compared). The exponent plane goes
first; every other plane is sent as two planes, its entries with a nonzero exponent and those with
exponent 0 (zeros and subnormals): the decoder already has the exponents, so the split is free, and
the zeros of a zero-heavy layer no longer spread their mass over the mantissa histogram (order-0
entropy given one bit that the decoder knows). Every bit pattern round-trips.

- `formats.py`: the formats (`FORMATS`, `float_format`) and which bit fields make each plane;
- `planes.py`: the plane split and join (`split_planes`, `join_planes`), the exponent-0 split;
- `plane_code.py`: one plane raw, constant or ANS under its histogram (Elias-gamma counts);
- `blob.py`: the blob (header, crc32 seal), `encode_float`, `decode_float`, `float_code_length`;
- `rows.py`: `raw_float_rows`, the report rows of this codec beside zstd on the same bytes.

On CUDA the plane split, the zero-exponent split and the histograms run on the device; only the
uint8 planes and 256 counts per plane go to the host, where `constriction` codes them. Decoding
assembles the planes on `device`.
"""

from coders.floatcodec.blob import MAGIC, decode_float, encode_blob, encode_float, float_code_length
from coders.floatcodec.formats import FORMATS, FloatFormat, as_float_tensor, float_format
from coders.floatcodec.plane_code import CHUNK, PlaneCode, plane_entropy
from coders.floatcodec.planes import join_planes, split_planes, sub_planes
from coders.floatcodec.rows import CODER_NAME, RAW_MODEL_NAMES, raw_float_rows

__all__ = [
    "CHUNK", "CODER_NAME", "FORMATS", "FloatFormat", "MAGIC", "PlaneCode", "RAW_MODEL_NAMES",
    "as_float_tensor", "decode_float", "encode_blob", "encode_float", "float_code_length", "float_format",
    "join_planes", "plane_entropy", "raw_float_rows", "split_planes", "sub_planes",
]
