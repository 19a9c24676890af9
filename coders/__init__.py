"""coders: quantizers, entropy coders, compressors and distributed algorithms (stage 3).

Bits of a tensor: quantizer -> probability model -> entropy coder (`coders.quantizers`,
`coders.models`, `coders.entropy`), reported by `bits_per_entry` / `code_capture` (`coders.report`).
"""

from coders.entropy import CODERS, code_length, decode, encode, zstd_raw_bits
from coders.models import (
    ProbabilityModel,
    build_model,
    empirical_entropy,
    family_model,
    histogram_model,
)
from coders.quantizers import (
    Distortion,
    EntropyConstrainedQuantizer,
    LloydMaxQuantizer,
    Quantized,
    UniformQuantizer,
    distortion,
)
from coders.report import bits_per_entry, code_capture, family_comparison

__all__ = [
    "CODERS",
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
    "zstd_raw_bits",
]
