"""A probability table from a fitted family over a quantizer's cells, and `build_model` by spec.

`family_model` takes a family object (`gradstats.families`, or a frozen scipy distribution via
`coders.family_fit.as_family`): p_k = the family's law of symbol k under the quantizer's cells
(`Quantized.cells.probs`: mass over each cell, or the triangle-convolved law of stochastic
rounding). Side bits: the range (`range_header_bits`), the family's parameters as bfloat16
(16 bits each; the table is computed from the rounded parameters, exactly what a decoder could
rebuild; 32 bits each when the family cannot be rebuilt from them), plus whatever the quantizer's
cells cost beyond its decoder data (`Quantized.edges_side_bits`). Which family and which fit:
`coders.models.codebooks`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.family_fit import as_family
from coders.models.histogram import SymbolHistogram
from coders.models.side_info import range_header_bits
from coders.models.table import MAX_TABLE, ProbabilityModel, as_symbols
from coders.wire import BF16_BITS, FLOAT32_BITS, bf16
from gradstats.families import Family, ZeroInflated


def bf16_params(dist: Any) -> Family | None:
    """The same family with every parameter rounded to bfloat16 (what a decoder receives in
    16 bits each), or None when the object cannot be rebuilt from its `params`."""
    dist = as_family(dist)
    try:
        if isinstance(dist, ZeroInflated):
            rebuilt = bf16_params(dist.base)
            return None if rebuilt is None else ZeroInflated(rebuilt, bf16(dist.pi))
        p = dist.params
        if not p:
            return None
        return type(dist)(**{k: bf16(v) for k, v in p.items()})
    except (TypeError, ValueError):
        return None


def table_range(dist: Family | None, quantized: Any, symbols: np.ndarray | SymbolHistogram,
                max_table: int = MAX_TABLE) -> tuple[int, int]:
    """[lo, hi] of a family table: the quantizer's bounded range if it clips, else the observed
    [min, max] of `symbols` (an array or a `SymbolHistogram`), at most `max_table` wide around the
    family's median (`dist` is only asked then)."""
    if quantized.bounds is not None:
        lo, hi = quantized.bounds
    elif isinstance(symbols, SymbolHistogram):
        lo, hi = (symbols.lo, symbols.hi) if symbols.n else (0, 0)
    elif symbols.size:
        lo, hi = int(symbols.min()), int(symbols.max())
    else:
        lo, hi = 0, 0
    if hi - lo + 1 > max_table:
        centre = int(np.clip(0, lo, hi))
        try:
            med = float(dist.ppf(0.5))
            e = quantized.edges(lo, hi)
            centre = lo + int(np.clip(np.searchsorted(e, med) - 1, 0, hi - lo))
        except (AttributeError, ValueError):
            pass
        lo = max(lo, centre - max_table // 2)
        hi = lo + max_table - 1
    return lo, hi


def family_model(dist: Any, quantized: Any, symbols: Any = None, *, name: str | None = None,
                 max_table: int = MAX_TABLE, n_params: int | None = None) -> ProbabilityModel:
    """Model from a fitted family: p_k = the family's probability of the quantizer's cell k.

    The table spans `table_range`; the escape entry gets the family's mass outside the table.
    Side bits: 16 per parameter (the probabilities are computed from the bf16-rounded
    parameters the decoder receives; 32 each when the family cannot be rebuilt from them, e.g. a
    scipy distribution, or when `n_params` is given), the range header (`range_header_bits`) and
    `quantized.edges_side_bits`.
    """
    dist = as_family(dist)
    s = symbols if isinstance(symbols, SymbolHistogram) else as_symbols(
        quantized.symbols if symbols is None else symbols)
    lo, hi = table_range(dist, quantized, s, max_table)
    k = dist.n_params if n_params is None else n_params
    sent = bf16_params(dist) if n_params is None else None
    if sent is not None:
        dist, param_bits = sent, BF16_BITS * k
    else:
        param_bits = FLOAT32_BITS * k
    p = quantized.cells.probs(dist, lo, hi)
    p = np.where(np.isfinite(p), np.maximum(p, 0.0), 0.0)
    esc = max(0.0, 1.0 - float(p.sum()))
    side = param_bits + range_header_bits(lo, hi - lo + 2) + int(getattr(quantized, "edges_side_bits", 0))
    label = name or dist.name or type(dist).__name__.lower()
    return ProbabilityModel(str(label), lo, np.append(p, esc), side, params=dict(dist.params))
