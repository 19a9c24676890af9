"""coders: quantizers, entropy coders, compressors and distributed algorithms (stage 3).

Bits of a tensor: quantizer -> probability model -> entropy coder (`coders.quantizers`,
`coders.models`, `coders.entropy`), reported by `bits_per_entry` / `code_capture` (`coders.report`).
Quantizers and coders are built by name (`make_quantizer`, `make_coder`); what travels has its
width in `coders.wire`; the family behind a codebook comes from `coders.family_fit`.
"""

from coders.entropy import CODERS, code_length, decode, encode, make_coder, zstd_raw_bits
from coders.models import (
    ProbabilityModel,
    build_model,
    empirical_entropy,
    family_model,
    histogram_model,
)
from coders.quantizers import (
    QUANTIZERS,
    Distortion,
    EntropyConstrainedQuantizer,
    LloydMaxQuantizer,
    Quantized,
    UniformQuantizer,
    distortion,
    make_quantizer,
)
from coders.report import bits_per_entry, code_capture, family_comparison

__all__ = [
    "CODERS",
    "QUANTIZERS",
    "Distortion",
    "EntropyConstrainedQuantizer",
    "LloydMaxQuantizer",
    "ProbabilityModel",
    "Quantized",
    "UniformQuantizer",
    "bits_per_entry",
    "build_model",
    "code_capture",
    "code_length",
    "decode",
    "distortion",
    "empirical_entropy",
    "encode",
    "family_comparison",
    "family_model",
    "histogram_model",
    "make_coder",
    "make_quantizer",
    "zstd_raw_bits",
]
