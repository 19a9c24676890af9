"""A probability table over the symbol alphabet [lo, hi] plus one escape entry.

A symbol outside [lo, hi] is coded as the escape entry followed by its raw value (zigzag, in a
width stated once per stream), so every coder is lossless for ANY integer input. Every table
probability is at least `PROB_FLOOR` (2^-24, the smallest probability constriction's 24-bit
categorical models can represent), so any symbol can occur.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coders.models.side_info import zigzag

INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
PROB_FLOOR = 2.0**-24
MAX_TABLE = 1 << 16
MAX_TABLE_LIMIT = 1 << 22


def floor_normalize(p: np.ndarray) -> np.ndarray:
    """p / sum p with every entry raised to `PROB_FLOOR`, the mass taken from the large ones
    proportionally: exactly the table a coder is handed."""
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("ProbabilityModel: probabilities must be finite and non-negative")
    return floor_normalize_valid(p)


def floor_normalize_valid(p: np.ndarray) -> np.ndarray:
    """`floor_normalize` of a table already known finite and non-negative (no checks)."""
    s = p.sum()
    p = p / s if s > 0 else np.full(p.shape, 1.0 / p.size)
    small = p < PROB_FLOOR
    if small.any():
        deficit = PROB_FLOOR * small.sum() - p[small].sum()
        big = ~small
        p = p.copy()
        p[small] = PROB_FLOOR
        p[big] *= 1.0 - deficit / p[big].sum()
    return p


def as_symbols(symbols: Any) -> np.ndarray:
    """Flat int64 view of an integer array or tensor; ValueError for anything else."""
    try:
        import torch

        if isinstance(symbols, torch.Tensor):
            symbols = symbols.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(symbols)
    if a.dtype.kind not in "iu":
        raise ValueError(f"symbols must be an integer array, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError("symbols must fit in int64")
    return a.astype(np.int64, copy=False).ravel()


def escape_width(escaped: np.ndarray) -> int:
    """Raw width (1..64 bits) of the zigzagged escaped values."""
    if escaped.size == 0:
        return 0
    m = int(zigzag(escaped).max())
    return max(1, m.bit_length())


def escape_section_bits(escaped: np.ndarray) -> int:
    """8 bits for the width plus width bits per escaped value (0 when nothing escapes)."""
    if escaped.size == 0:
        return 0
    return 8 + escaped.size * escape_width(escaped)


@dataclass(eq=False)
class ProbabilityModel:
    """A probability table over symbols [lo, hi] (probs[:-1]) plus the escape entry (probs[-1])."""

    name: str
    lo: int
    probs: np.ndarray
    side_bits: int
    params: dict = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    """What the fit behind a family model reported (e.g. a shape on its bound): the reasons a
    model may predict the symbols badly."""
    fit: str = ""
    """Which fit made a family model: "codelength", "values" or "given" ("" for a histogram)."""
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float64)
        if p.ndim != 1 or p.size < 2:
            raise ValueError("ProbabilityModel: probs must be 1-D with at least one symbol plus escape")
        if p.size > MAX_TABLE_LIMIT + 1:
            raise ValueError(f"ProbabilityModel: table of {p.size - 1} symbols exceeds {MAX_TABLE_LIMIT}")
        self.probs = floor_normalize(p)
        self.lo = int(self.lo)
        if not INT64_MIN <= self.lo <= INT64_MAX:
            raise ValueError(f"ProbabilityModel: lo must be an int64, got {self.lo}")

    @property
    def hi(self) -> int:
        """The largest symbol in the table: lo + table size - 2, or INT64_MAX when the table runs
        past it (its entries beyond INT64_MAX belong to no symbol)."""
        return min(self.lo + self.probs.size - 2, INT64_MAX)

    @property
    def table_size(self) -> int:
        """Entries including the escape entry."""
        return int(self.probs.size)

    @property
    def escape(self) -> int:
        return self.probs.size - 1

    def fingerprint(self) -> int:
        """crc32 of lo and the table, stored in a blob so decoding with another model fails loudly."""
        return zlib.crc32(np.int64(self.lo).tobytes() + self.probs.tobytes())

    def indices(self, symbols: np.ndarray) -> np.ndarray:
        """Table index of each symbol (int32); symbols outside [lo, hi] map to the escape entry."""
        s = np.asarray(symbols, dtype=np.int64)
        if s.size == 0:
            return np.zeros(0, dtype=np.int32)
        if int(s.min()) >= self.lo and int(s.max()) <= self.hi:
            # common case, one pass: no symbol escapes
            out = np.empty(s.shape, dtype=np.int32)
            np.subtract(s, np.int64(self.lo), out=out, casting="unsafe")
            return out
        # compare before subtracting: s - lo wraps around in int64 at the edges
        inside = (s >= np.int64(self.lo)) & (s <= np.int64(self.hi))
        idx = np.where(inside, s - np.int64(self.lo), self.escape)
        return idx.astype(np.int32)

    def ideal_bits(self, symbols: Any) -> float:
        """sum -log2 p(symbol) over the symbols, escapes charged -log2 p_esc + their raw bits.

        `symbols` may be a `coders.models.histogram.SymbolHistogram` (told apart by its
        `table_counts`; histogram.py imports this module): the same sum from its counts.
        """
        if hasattr(symbols, "table_counts"):
            if symbols.n == 0:
                return 0.0
            counts = symbols.table_counts(self)
            return float(np.dot(counts, -np.log2(self.probs))) + symbols.escape_bits(self)
        s = as_symbols(symbols)
        if s.size == 0:
            return 0.0
        idx = self.indices(s)
        counts = np.bincount(idx, minlength=self.table_size)
        bits = float(np.dot(counts, -np.log2(self.probs)))
        esc = s[idx == self.escape]
        return bits + escape_section_bits(esc)

    def cross_entropy(self, symbols: Any) -> float:
        """Bits per symbol under this model (the limit for coding these symbols with it); `symbols`
        as in `ideal_bits`."""
        s = symbols if hasattr(symbols, "table_counts") else as_symbols(symbols)
        n = s.n if hasattr(s, "table_counts") else s.size
        return self.ideal_bits(s) / n if n else 0.0

    def entropy(self) -> float:
        """Entropy of the table itself (bits)."""
        return float(-(self.probs * np.log2(self.probs)).sum())
