"""The empirical model (the oracle codebook), the plug-in entropy, and the symbol histogram they share.

Side bits of `histogram_model`: the range (`range_header_bits`) plus every count coded as
Elias-gamma of count + 1. `SymbolHistogram` counts a tensor's symbols once (one bincount over
[min, max]) so that every model's table counts, cross-entropies, escape bits and Huffman sizes
follow from counts (O(alphabet)) instead of a pass over the entries per model and coder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.models.side_info import elias_gamma_bits, range_header_bits
from coders.models.table import (
    INT64_MAX,
    INT64_MIN,
    MAX_TABLE,
    MAX_TABLE_LIMIT,
    ProbabilityModel,
    as_symbols,
    escape_width,
)

HISTOGRAM_MAX_RANGE = 1 << 22
"""`SymbolHistogram` counts symbols spanning at most this many values (32 MiB of counts); a wider
alphabet keeps the per-entry paths (its `counts` is None)."""
LANE_COUNTS_MAX = 1 << 22
"""At most this many (lane, symbol) cells in `SymbolHistogram.lane_counts` (else None)."""


def _plugin_entropy(c: np.ndarray, n: int) -> float:
    p = c / n
    return float(-(p * np.log2(p)).sum())


def empirical_entropy(symbols: Any) -> float:
    """Plug-in entropy of the symbols in bits per symbol, -sum p_k log2 p_k."""
    if isinstance(symbols, SymbolHistogram):
        return symbols.entropy()
    s = as_symbols(symbols)
    if s.size == 0:
        return 0.0
    if int(s.max()) - int(s.min()) > 1 << 24:
        _, c = np.unique(s, return_counts=True)
    else:
        c = np.bincount(s - s.min())
        c = c[c > 0]
    return _plugin_entropy(c, s.size)


class SymbolHistogram:
    """The counts of a tensor's symbols over [lo, hi] = [min, max], counted once and shared by every
    model and coder of the tensor: c_k = #{i : s_i = k}.

    `counts` is None when the alphabet is wider than `HISTOGRAM_MAX_RANGE` (callers then use the
    symbols, kept as `symbols`). `table_counts(model)` is bincount(model.indices(symbols)) exactly.
    """

    def __init__(self, symbols: Any, lanes: tuple[int, int] | None = None) -> None:
        """`lanes`: (chunk size, lane) of `lane_counts` wanted later: then counted first, and the
        counts summed from them (one pass over the symbols instead of two)."""
        s = as_symbols(symbols)
        self.symbols, self.n = s, int(s.size)
        self.lo, self.hi = (int(s.min()), int(s.max())) if s.size else (0, -1)
        self.counts: np.ndarray | None = None
        self._lanes: dict[tuple[int, int], np.ndarray | None] = {}
        if s.size and self.hi - self.lo < HISTOGRAM_MAX_RANGE:
            per_lane = self.lane_counts(*lanes) if lanes is not None else None
            self.counts = per_lane.sum(axis=0) if per_lane is not None else np.bincount(s - np.int64(self.lo))

    @property
    def exact(self) -> bool:
        """True when the counts hold the whole tensor (every count-based answer is exact)."""
        return self.counts is not None or self.n == 0

    def entropy(self) -> float:
        """`empirical_entropy` of the symbols, from the counts."""
        if self.n == 0:
            return 0.0
        if self.counts is None or self.hi - self.lo > 1 << 24:
            return empirical_entropy(self.symbols)
        c = self.counts
        return _plugin_entropy(c[c > 0], self.n)

    def range_counts(self, lo: int, hi: int) -> tuple[np.ndarray, int]:
        """(int64 counts of the symbols lo..hi, how many symbols lie outside [lo, hi])."""
        out = np.zeros(max(hi - lo + 1, 0), dtype=np.int64)
        if self.n == 0:
            return out, 0
        if self.counts is None:
            s = self.symbols
            inside = (s >= lo) & (s <= hi)
            out += np.bincount(s[inside] - np.int64(lo), minlength=out.size)[: out.size]
            return out, self.n - int(out.sum())
        a = min(max(lo - self.lo, 0), self.hi - self.lo + 1)  # [a, b) of `counts` inside [lo, hi]
        b = max(min(hi - self.lo + 1, self.hi - self.lo + 1), a)
        if b > a:
            out[self.lo + a - lo : self.lo + b - lo] = self.counts[a:b]
        return out, self.n - int(out.sum())

    def table_counts(self, model: ProbabilityModel) -> np.ndarray:
        """int64 counts of the model's table entries (escape entry last): bincount of its indices."""
        if self.counts is None and self.n:
            return np.bincount(model.indices(self.symbols), minlength=model.table_size)
        inside, outside = self.range_counts(model.lo, model.hi)
        out = np.zeros(model.table_size, dtype=np.int64)
        out[: inside.size] = inside
        out[-1] += outside
        return out

    def escaped_values(self, lo: int, hi: int) -> np.ndarray:
        """The distinct symbols outside [lo, hi] (what escapes under a table over [lo, hi])."""
        if self.counts is None:
            s = self.symbols
            return np.unique(s[(s < lo) | (s > hi)])
        present = np.flatnonzero(self.counts).astype(np.int64) + np.int64(self.lo)
        return present[(present < lo) | (present > hi)]

    def escape_bits(self, model: ProbabilityModel) -> int:
        """`escape_section_bits` of the symbols that escape under the model's table."""
        n_esc = int(self.table_counts(model)[-1])
        if n_esc == 0:
            return 0
        # the raw width depends on the largest zigzagged escaped value only: the distinct
        # escaped values decide it
        return 8 + n_esc * escape_width(self.escaped_values(model.lo, model.hi))

    def lane_counts(self, chunk_size: int, lane: int) -> np.ndarray | None:
        """Counts per lane (rows: the lanes of chunk 0, then of chunk 1, ...; a lane is `lane`
        consecutive symbols of a chunk, the last one of a chunk possibly shorter), columns lo..hi;
        None when that matrix would exceed `LANE_COUNTS_MAX` cells or the alphabet is too wide."""
        key = (int(chunk_size), int(lane))
        if key in self._lanes:
            return self._lanes[key]
        width = self.hi - self.lo + 1
        n_lanes = sum(-(-min(chunk_size, self.n - a) // lane) for a in range(0, self.n, chunk_size))
        out = None
        countable = self.n and self.hi - self.lo < HISTOGRAM_MAX_RANGE  # `counts` is (or will be) there
        if countable and n_lanes * width <= LANE_COUNTS_MAX:
            rows = []
            for a in range(0, self.n, chunk_size):
                part = self.symbols[a : a + chunk_size]
                k = -(-part.size // lane)
                full = part.size // lane
                # key = lane * width + (s - lo): one bincount gives every lane's histogram
                keys = part[: full * lane].reshape(full, lane) + (
                    np.arange(full, dtype=np.int64) * width - self.lo)[:, None]
                c = np.bincount(keys.ravel(), minlength=full * width).reshape(full, width)
                if k > full:
                    tail = np.bincount(part[full * lane :] - np.int64(self.lo), minlength=width)
                    c = np.vstack([c, tail[None, :]])
                rows.append(c)
            out = np.vstack(rows) if rows else np.zeros((0, width), dtype=np.int64)
        self._lanes[key] = out
        return out


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
    + sum over the table (incl. escape) of Elias-gamma(c + 1). `symbols` may be a `SymbolHistogram`
    (its counts are the table then).
    """
    if not 1 <= max_table <= MAX_TABLE_LIMIT:
        raise ValueError(f"histogram_model: max_table must be in [1, {MAX_TABLE_LIMIT}], got {max_table}")
    hist = symbols if isinstance(symbols, SymbolHistogram) else None
    s = hist.symbols if hist is not None else as_symbols(symbols)
    if s.size == 0:
        counts = np.zeros(2, dtype=np.int64)
        lo = 0
    else:
        smin, smax = (hist.lo, hist.hi) if hist is not None else (int(s.min()), int(s.max()))
        lo, hi = _window(s, max_table, smin, smax)
        windowed = lo > smin or hi < smax
        counts = np.zeros(hi - lo + 1, dtype=np.int64)
    if s.size and hist is not None and hist.counts is not None and not windowed:
        counts = np.append(hist.counts, 0)  # the counts over [min, max], no escapes
    elif s.size:
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
