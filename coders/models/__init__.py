"""Probability models: a table over the symbol alphabet [lo, hi] plus one escape entry.

- `table.py`: `ProbabilityModel` (floored table, escape entry, ideal bits / cross-entropy);
- `side_info.py`: Elias-gamma, zigzag, the range header: what side information costs;
- `histogram.py`: the empirical model (the oracle), the plug-in entropy, and `SymbolHistogram`
  (a tensor's symbol counts, once, for every model and coder of it);
- `family.py`: a table from a family over a quantizer's cells (`family_model`);
- `codelength.py`: code-length-optimal fits of a family to the symbols under the cells;
- `codebooks.py`: every model spec of one tensor (`Codebooks`, `build_model`), fits shared.

Side information (what a decoder must receive before it can decode) is counted in `side_bits`.
"""

from coders.family_fit import fit_dist
from coders.models.codebooks import Codebooks, build_model, parse_spec
from coders.models.codelength import FITS, CodelengthFit, cell_probs, fit_codelength, is_degenerate
from coders.models.family import bf16_params, family_model, table_range
from coders.models.histogram import SymbolHistogram, empirical_entropy, histogram_model
from coders.models.side_info import (
    elias_gamma_bits,
    elias_gamma_pack,
    elias_gamma_unpack,
    range_header_bits,
    unzigzag,
    zigzag,
)
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
    "FITS", "Codebooks", "CodelengthFit", "cell_probs", "fit_codelength", "is_degenerate", "parse_spec",
    "MAX_TABLE", "MAX_TABLE_LIMIT", "PROB_FLOOR", "ProbabilityModel", "as_symbols", "bf16_params",
    "build_model", "elias_gamma_bits", "elias_gamma_pack", "elias_gamma_unpack", "empirical_entropy",
    "escape_section_bits", "escape_width",
    "family_model", "fit_dist", "floor_normalize", "histogram_model", "range_header_bits",
    "stochastic_rounding_probs", "SymbolHistogram", "table_range", "unzigzag", "zigzag",
]
