"""The empirical model (the oracle codebook) and the plug-in entropy of symbols.

Side bits of `histogram_model`: the range (`range_header_bits`) plus every count coded as
Elias-gamma of count + 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.models.side_info import elias_gamma_bits, range_header_bits
from coders.models.table import INT64_MAX, INT64_MIN, MAX_TABLE, MAX_TABLE_LIMIT, ProbabilityModel, as_symbols


def empirical_entropy(symbols: Any) -> float:
    """Plug-in entropy of the symbols in bits per symbol, -sum p_k log2 p_k."""
    s = as_symbols(symbols)
    if s.size == 0:
        return 0.0
    if int(s.max()) - int(s.min()) > 1 << 24:
        _, c = np.unique(s, return_counts=True)
    else:
        c = np.bincount(s - s.min())
        c = c[c > 0]
    p = c / s.size
    return float(-(p * np.log2(p)).sum())


def _window(s: np.ndarray, max_table: int, lo: int, hi: int) -> tuple[int, int]:
    if hi - lo + 1 <= max_table:
        return lo, hi
    # too wide an alphabet: keep the max_table symbols centred on the median, escape the rest
    c = int(np.median(s))
    # the window stays inside int64 (the median of int64 symbols is a float64, and may be 2^63)
    lo = min(max(c - max_table // 2, INT64_MIN), INT64_MAX - max_table + 1)
    return lo, lo + max_table - 1


def histogram_model(symbols: Any, max_table: int = MAX_TABLE) -> ProbabilityModel:
    """Empirical model (the oracle): counts over [min, max] (at most `max_table` symbols).

    Side bits: the range (`range_header_bits`: Elias-gamma of zigzag(lo) + 1 and of the table size)
    + sum over the table (incl. escape) of Elias-gamma(c + 1).
    """
    if not 1 <= max_table <= MAX_TABLE_LIMIT:
        raise ValueError(f"histogram_model: max_table must be in [1, {MAX_TABLE_LIMIT}], got {max_table}")
    s = as_symbols(symbols)
    if s.size == 0:
        counts = np.zeros(2, dtype=np.int64)
        lo = 0
    else:
        smin, smax = int(s.min()), int(s.max())
        lo, hi = _window(s, max_table, smin, smax)
        windowed = lo > smin or hi < smax
        counts = np.zeros(hi - lo + 1, dtype=np.int64)
        step = 1 << 18  # one small reused buffer (stays in cache) instead of a full-size copy
        buf = np.empty(min(step, s.size), dtype=np.int64)
        for a in range(0, s.size, step):
            part = s[a : a + step]
            idx = np.subtract(part, np.int64(lo), out=buf[: part.size])
            if windowed:
                idx = idx[(idx >= 0) & (idx <= hi - lo)]
            counts += np.bincount(idx, minlength=hi - lo + 1)
        counts = np.append(counts, s.size - int(counts.sum()))
    side = range_header_bits(lo, counts.size) + int(elias_gamma_bits(counts + 1).sum())
    p = counts.astype(np.float64)
    return ProbabilityModel("histogram", lo, p, side, params={"n": int(s.size)})
