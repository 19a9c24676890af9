"""Probability models: a table over the symbol alphabet [lo, hi] plus one escape entry.

- `table.py`: `ProbabilityModel` (floored table, escape entry, ideal bits / cross-entropy);
- `side_info.py`: Elias-gamma, zigzag, the range header: what side information costs;
- `histogram.py`: the empirical model (the oracle) and the plug-in entropy;
- `family.py`: a table from a family over a quantizer's cells (`family_model`), `build_model`.

Side information (what a decoder must receive before it can decode) is counted in `side_bits`.
"""

from coders.family_fit import fit_dist
from coders.models.family import bf16_params, build_model, family_model, table_range
from coders.models.histogram import empirical_entropy, histogram_model
from coders.models.side_info import elias_gamma_bits, range_header_bits, unzigzag, zigzag
from coders.models.table import (
    MAX_TABLE,
    MAX_TABLE_LIMIT,
    PROB_FLOOR,
    ProbabilityModel,
    as_symbols,
    escape_section_bits,
    escape_width,
    floor_normalize,
)
from coders.quantizers.uniform import stochastic_rounding_probs

__all__ = [
    "MAX_TABLE", "MAX_TABLE_LIMIT", "PROB_FLOOR", "ProbabilityModel", "as_symbols", "bf16_params",
    "build_model", "elias_gamma_bits", "empirical_entropy", "escape_section_bits", "escape_width",
    "family_model", "fit_dist", "floor_normalize", "histogram_model", "range_header_bits",
    "stochastic_rounding_probs", "table_range", "unzigzag", "zigzag",
]
