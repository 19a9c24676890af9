"""Probability models: a table over the symbol alphabet [lo, hi] plus one escape entry.

A symbol outside [lo, hi] is coded as the escape entry followed by its raw value (zigzag, in a
width stated once per stream), so every coder is lossless for ANY integer input. Every table
probability is at least `PROB_FLOOR` (2^-24, the smallest probability constriction's 24-bit
categorical models can represent), so any symbol can occur.

Side information (what a decoder must receive before it can decode) is counted in `side_bits`:
- the table range: Elias-gamma codes (Elias 1975; 2 floor(log2 v) + 1 bits) of zigzag(lo) + 1 and
  of the table size (`range_header_bits`);
- `histogram_model` (the oracle): the range plus every count coded as Elias-gamma of count + 1;
- `family_model`: the range plus the family's parameters as bfloat16 (16 bits each; the table is
  computed from the rounded parameters, exactly what a decoder could rebuild), plus whatever the
  quantizer's cells cost beyond its decoder data (`Quantized.edges_side_bits`, e.g. the
  thresholds of an entropy-constrained quantizer).
  Probabilities are the family's `interval_probs` over the quantizer's cells (model domain); for
  stochastic rounding, the density convolved with the rounding triangle
  (`stochastic_rounding_probs`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coders.quantizers import round_bf16

PROB_FLOOR = 2.0**-24
MAX_TABLE = 1 << 16
MAX_TABLE_LIMIT = 1 << 22
HEADER_FLOAT_BITS = 32
BF16_PARAM_BITS = 16


def elias_gamma_bits(values: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias-gamma code of each positive integer v: 2 floor(log2 v) + 1."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and v.min() < 1:
        raise ValueError("elias_gamma_bits: values must be >= 1")
    # exact floor(log2 v) for int64 via frexp on float64 is exact below 2^53
    _, e = np.frexp(v.astype(np.float64))
    return 2 * (e.astype(np.int64) - 1) + 1


def _floor_normalize(p: np.ndarray) -> np.ndarray:
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("ProbabilityModel: probabilities must be finite and non-negative")
    s = p.sum()
    p = p / s if s > 0 else np.full(p.shape, 1.0 / p.size)
    # raise small entries to the floor, taking the mass from the large ones proportionally
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
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float64)
        if p.ndim != 1 or p.size < 2:
            raise ValueError("ProbabilityModel: probs must be 1-D with at least one symbol plus escape")
        if p.size > MAX_TABLE_LIMIT + 1:
            raise ValueError(f"ProbabilityModel: table of {p.size - 1} symbols exceeds {MAX_TABLE_LIMIT}")
        self.probs = _floor_normalize(p)
        self.lo = int(self.lo)

    @property
    def hi(self) -> int:
        return self.lo + self.probs.size - 2

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
        idx = s - self.lo
        inside = (idx >= 0) & (idx <= self.escape - 1)
        idx = np.where(inside, idx, self.escape)
        return idx.astype(np.int32)

    def ideal_bits(self, symbols: Any) -> float:
        """sum -log2 p(symbol) over the symbols, escapes charged -log2 p_esc + their raw bits."""
        s = as_symbols(symbols)
        if s.size == 0:
            return 0.0
        idx = self.indices(s)
        counts = np.bincount(idx, minlength=self.table_size)
        bits = float(np.dot(counts, -np.log2(self.probs)))
        esc = s[idx == self.escape]
        return bits + escape_section_bits(esc)

    def cross_entropy(self, symbols: Any) -> float:
        """Bits per symbol under this model (the limit for coding these symbols with it)."""
        s = as_symbols(symbols)
        return self.ideal_bits(s) / s.size if s.size else 0.0

    def entropy(self) -> float:
        """Entropy of the table itself (bits)."""
        return float(-(self.probs * np.log2(self.probs)).sum())


def zigzag(v: np.ndarray) -> np.ndarray:
    """int64 -> uint64, 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ (-(u & np.uint64(1)).view(np.int64))


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
    lo = c - max_table // 2
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


def fit_dist(values: np.ndarray, family: Any) -> Any:
    """A distribution with `interval_probs`: `family` itself if it is one, else gradstats.fit(...).dist."""
    return _fit_with_flags(values, family)[0]


def _fit_with_flags(values: np.ndarray, family: Any) -> tuple[Any, tuple[str, ...]]:
    """`fit_dist` plus the flags of the fit (empty for a distribution given as is)."""
    if hasattr(family, "interval_probs") or hasattr(family, "cdf"):
        return family, ()
    if not isinstance(family, str):
        raise ValueError(f"fit_dist: family must be a name or a distribution, got {family!r}")
    v = np.asarray(values)
    if v.size == 0:
        raise ValueError(f"fit_dist: cannot fit {family} to an empty input")
    if float(v.max()) == float(v.min()):
        raise ValueError(f"fit_dist: cannot fit {family}: input has one distinct value")
    from gradstats.fitting import fit

    result = fit(v, family=family)
    if result.dist is None:
        raise ValueError(f"fit_dist: {family} fit is degenerate: {'; '.join(result.flags)}")
    return result.dist, tuple(result.flags)


def _interval_probs(dist: Any, edges: np.ndarray) -> np.ndarray:
    if hasattr(dist, "interval_probs"):
        return np.asarray(dist.interval_probs(edges), dtype=np.float64)
    c = np.asarray(dist.cdf(edges), dtype=np.float64)
    return np.diff(c)


def _params(dist: Any) -> dict:
    p = getattr(dist, "params", None)
    if callable(p):
        p = p()
    if isinstance(p, dict):
        return {k: float(v) for k, v in p.items() if np.isscalar(v)}
    return {}


def _count_params(dist: Any) -> int:
    """Number of parameters: `params` of a gradstats family, args + kwds of a scipy frozen dist."""
    p = _params(dist)
    if p:
        return len(p)
    return len(getattr(dist, "args", ())) + len(getattr(dist, "kwds", {}))


def _bf16(v: float) -> float:
    return float(round_bf16(np.array([v], dtype=np.float32))[0])


def bf16_params(dist: Any) -> Any | None:
    """The same family with every parameter rounded to bfloat16 (what a decoder receives in
    16 bits each), or None when the object cannot be rebuilt from its `params`."""
    try:
        base = getattr(dist, "base", None)
        if base is not None and hasattr(dist, "pi"):  # ZeroInflated(base, pi)
            rebuilt = bf16_params(base)
            return None if rebuilt is None else type(dist)(rebuilt, _bf16(dist.pi))
        p = _params(dist)
        if not p:
            return None
        return type(dist)(**{k: _bf16(v) for k, v in p.items()})
    except (TypeError, ValueError):
        return None


def range_header_bits(lo: int, size: int) -> int:
    """Bits to state a table's range: Elias-gamma of zigzag(lo) + 1 and of the table size."""
    z = int(zigzag(np.array([lo]))[0])
    return int(elias_gamma_bits(np.array([min(z + 1, 2**62), max(size, 1)])).sum())


def stochastic_rounding_probs(dist: Any, lo: int, hi: int, step: float, sub: int = 16,
                              bounded: bool = False) -> np.ndarray:
    """P(K = k), k = lo..hi, for stochastic rounding K = floor(X / step + U), U ~ U[0, 1).

    P(K <= k) = E[clip(k + 1 - X / step, 0, 1)] = (G((k + 1) s) - G(k s)) / s with
    G(x) = int_{-inf}^x F(t) dt (the density convolved with a triangle of half-width s); G by the
    midpoint rule on a grid of s / `sub` (exact at atoms such as a zero-inflated point mass, which
    sit on grid points). Returns lo..hi probabilities; with `bounded`, the end symbols absorb the
    tails (a clipping quantizer), else the tails are left for the escape entry.
    """
    K = hi - lo + 1
    h = step / sub
    mids = (lo - 1 + (np.arange((K + 1) * sub) + 0.5) / sub) * step
    F = np.asarray(dist.cdf(mids), dtype=np.float64)
    G = np.concatenate([[0.0], np.cumsum(F) * h])[::sub]  # at k s, k = lo - 1 .. hi + 1 (offset cancels)
    C = np.clip(np.diff(G) / step, 0.0, 1.0)  # P(K <= k), k = lo - 1 .. hi
    C = np.maximum.accumulate(C)
    p = np.diff(C)
    if bounded:
        p[0] = C[1]
        p[-1] = 1.0 - C[-2] if K > 1 else 1.0
    return p


def family_model(dist: Any, quantized: Any, symbols: Any = None, *, name: str | None = None,
                 max_table: int = MAX_TABLE, n_params: int | None = None) -> ProbabilityModel:
    """Model from a fitted family: p_k = dist.interval_probs(cells of the quantizer)[k].

    The table spans the quantizer's bounded symbol range if it clips, else the observed
    [min, max] of `symbols` (the default: `quantized.symbols`), at most `max_table` wide around
    the family's median; the escape entry gets the family's mass outside the table.
    Side bits: 16 per parameter (the probabilities are computed from the bf16-rounded
    parameters the decoder receives; 32 each when the object cannot be rebuilt from them, e.g. a
    scipy distribution), the range header (`range_header_bits`) and `quantized.edges_side_bits`.
    """
    s = as_symbols(quantized.symbols if symbols is None else symbols)
    if quantized.bounds is not None:
        lo, hi = quantized.bounds
    elif s.size:
        lo, hi = int(s.min()), int(s.max())
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
    k = _count_params(dist) if n_params is None else n_params
    sent = bf16_params(dist) if n_params is None else None
    if sent is not None:
        dist, param_bits = sent, BF16_PARAM_BITS * k
    else:
        param_bits = HEADER_FLOAT_BITS * k
    if getattr(quantized, "stochastic", False) and quantized.levels is None and quantized.thresholds is None:
        sub = int(np.clip((1 << 20) // (hi - lo + 2), 16, 256))
        p = stochastic_rounding_probs(dist, lo, hi, quantized.step, sub=sub,
                                      bounded=quantized.bounds is not None)
    else:
        p = _interval_probs(dist, quantized.edges(lo, hi))
    p = np.where(np.isfinite(p), np.maximum(p, 0.0), 0.0)
    esc = max(0.0, 1.0 - float(p.sum()))
    params = _params(dist)
    side = param_bits + range_header_bits(lo, hi - lo + 2) + int(getattr(quantized, "edges_side_bits", 0))
    label = name or getattr(dist, "name", None) or type(dist).__name__.lower()
    return ProbabilityModel(str(label), lo, np.append(p, esc), side, params=params)


def build_model(spec: Any, quantized: Any, values: np.ndarray | None = None, max_table: int = MAX_TABLE,
                fit_sample: int | None = 1 << 17, seed: int = 0) -> ProbabilityModel:
    """A model from a spec: a ProbabilityModel (as is), "histogram", a family name, or a distribution.

    Family names are fitted (`gradstats.fit`) to `values`, the model-domain values
    (`quantizer.normalize(x)`), or to a seeded random subsample of `fit_sample` of them (the
    parameters are sent as side information either way, so this only trades fit accuracy for time).
    """
    if isinstance(spec, ProbabilityModel):
        return spec
    if isinstance(spec, str) and spec in ("histogram", "empirical"):
        return histogram_model(quantized.symbols, max_table=max_table)
    if isinstance(spec, str):
        if values is None:
            raise ValueError(f"build_model: fitting {spec!r} needs the model-domain values")
        v = np.asarray(values).ravel()
        if fit_sample is not None and v.size > fit_sample:
            v = v[np.random.default_rng(seed).choice(v.size, fit_sample, replace=False)]
        dist, flags = _fit_with_flags(v, spec)
        model = family_model(dist, quantized, name=spec, max_table=max_table)
        model.flags = flags
        return model
    return family_model(spec, quantized, max_table=max_table)


__all__ = [
    "PROB_FLOOR", "MAX_TABLE", "ProbabilityModel", "histogram_model", "family_model", "build_model",
    "fit_dist", "empirical_entropy", "elias_gamma_bits", "escape_section_bits", "zigzag", "unzigzag",
]
