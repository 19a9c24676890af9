"""Scalar quantizers: values -> integer symbols plus the cells the decoder needs to reconstruct them.

Every quantizer (the `Quantizer` protocol) has `quantize(x) -> Quantized`, `dequantize(Quantized)
-> array` and `normalize(x)` (the model-domain values). A `Quantized` holds its symbols (flat
`np.int64`), its `cells` (the decoder data: reconstruction, cell boundaries in the model domain
and the symbol law under a family, `coders.quantizers.base.Cells`) and their cost in bits
(`side_bits`). The model domain is the input itself for per-layer scaling and the input divided
by its block scale for per-block scaling.

- `UniformQuantizer` (`uniform.py`): mid-tread, deterministic or stochastic rounding, per layer
  or per block;
- `LloydMaxQuantizer` (`lloyd_max.py`): the MSE-optimal L-level quantizer for a fitted density
  (Lloyd 1982; Max 1960);
- `EntropyConstrainedQuantizer` (`entropy_constrained.py`): Chou, Lookabaugh & Gray 1989.

`QUANTIZERS` / `make_quantizer(name, **options)` build one by name. Inputs are numpy arrays or
torch tensors (any device); `UniformQuantizer` computes on the tensor's device, the others on the
host. Non-finite input raises `NonFiniteInputError` (a ValueError) whose message
`nonfinite_summary` writes. Inputs of extreme magnitude (max |x| outside [2^-64, 2^64]) are
quantized as x / 2^E (exact), E sent in 16 bits (`Quantized.exponent`, `scale_exponent`), so
every quantizer is scale-invariant over the whole float range.
"""

from coders.quantizers.base import (
    EXPONENT_BITS,
    Cells,
    Distortion,
    NonFiniteInputError,
    Quantized,
    Quantizer,
    distortion,
    nonfinite_summary,
    scale_exponent,
)
from coders.quantizers.entropy_constrained import EntropyConstrainedQuantizer, ThresholdCells
from coders.quantizers.lloyd_max import LloydMaxQuantizer, TableCells, lloyd_max_levels
from coders.quantizers.registry import QUANTIZERS, make_quantizer
from coders.quantizers.uniform import UniformCells, UniformQuantizer, stochastic_rounding_probs
from coders.wire import BF16_BITS, FLOAT32_BITS, round_bf16

__all__ = [
    "BF16_BITS", "EXPONENT_BITS", "FLOAT32_BITS", "QUANTIZERS", "Cells", "Distortion",
    "EntropyConstrainedQuantizer", "LloydMaxQuantizer", "NonFiniteInputError", "Quantized", "Quantizer",
    "TableCells", "ThresholdCells", "UniformCells", "UniformQuantizer", "distortion", "lloyd_max_levels",
    "make_quantizer", "nonfinite_summary", "round_bf16", "scale_exponent", "stochastic_rounding_probs",
]
