"""coders: quantizers, entropy coders, compressors and distributed algorithms (stage 3).

Bits of a tensor: quantizer -> probability model -> entropy coder (`coders.quantizers`,
`coders.models`, `coders.entropy`), reported by `bits_per_entry` / `code_capture` (`coders.report`).
Quantizers and coders are built by name (`make_quantizer`, `make_coder`); what travels has its
width in `coders.wire`; the family behind a codebook comes from `coders.family_fit`.
Codebooks are fitted to the symbols under the quantizer's cells by default
(`coders.models.codelength`; `fit="values"` for the continuous MLE), and `coders.selection` picks
the best (and best parametric) codebook by total bits: `codebook_headline`.
"""

from coders.entropy import CODERS, code_length, decode, encode, make_coder, zstd_raw_bits
from coders.models import (
    Codebooks,
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
from coders.selection import BEST, BEST_PARAMETRIC, codebook_headline

__all__ = [
    "BEST",
    "BEST_PARAMETRIC",
    "CODERS",
    "Codebooks",
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
    "codebook_headline",
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
