"""Codebooks for one quantized tensor: every model spec -> its `ProbabilityModel`, fits shared.

A spec is a `ProbabilityModel` (as is), "histogram", a family object (used as is), or a family
name with an optional fit suffix: "gennorm" (the default fit, "codelength" unless told
otherwise), "gennorm:codelength", "gennorm:values" (the continuous MLE of the model-domain
values, what the fit stage reports). `Codebooks` keeps the code-length fits it made, so the
families nested in another (Laplace and Normal in GenNorm, a base in its zero-inflated form) are
fitted once and serve as starts and candidates of the larger family (`coders.models.codelength`).
Every model carries `fit` (which fit made it) and `flags` (why it may be degenerate).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from coders.family_fit import fit_with_flags
from coders.models.codelength import (
    BINNED_STARTS,
    FITS,
    NESTED,
    SHAPE,
    CodelengthFit,
    SymbolCounts,
    binned_start,
    cell_probs,
    family_params,
    fit_codelength,
    make_family,
)
from coders.models.family import family_model, table_range
from coders.models.histogram import SymbolHistogram, histogram_model
from coders.models.table import MAX_TABLE, ProbabilityModel, as_symbols
from coders.wire import bf16
from gradstats.families import family_name


def parse_spec(spec: str, default_fit: str = "codelength") -> tuple[str, str]:
    """("gennorm:values") -> ("gennorm", "values"); ValueError for an unknown fit."""
    name, _, fit = str(spec).partition(":")
    fit = fit or default_fit
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r} in model {spec!r}; use one of {', '.join(FITS)}")
    return name, fit


def _embed(inner: str, outer: str, p: dict[str, float]) -> dict[str, float] | None:
    """The parameters of `inner`'s point as a point of `outer` (None when not nested)."""
    if outer == f"zi-{inner}":
        return {"pi": 0.0, **p}
    if outer == "gennorm" and inner == "laplace":
        return {"beta": 1.0, "loc": p["loc"], "scale": p["scale"]}
    if outer == "gennorm" and inner == "normal":
        return {"beta": 2.0, "loc": p["loc"], "scale": p["scale"] * math.sqrt(2.0)}
    return None


def _moment_start(family: str, v: np.ndarray, loc: str | float) -> dict[str, float] | None:
    """A start from moments of the values when the continuous fit fails (None: nothing to fit)."""
    base = family.removeprefix("zi-")
    m = float(np.median(v)) if loc == "fit" else float(loc)
    sd = float(np.sqrt(np.mean((v - m) ** 2)))
    if not sd > 0:
        return None
    p = {"loc": m, "scale": sd}
    if base == "laplace":
        p["scale"] = float(np.mean(np.abs(v - m)))
    elif base == "gennorm":
        p.update(beta=1.0, scale=float(np.mean(np.abs(v - m))))
    elif base == "t":
        p.update(df=5.0, scale=sd * math.sqrt(3.0 / 5.0))
    if family.startswith("zi-"):
        p["pi"] = 0.0
    return p if p["scale"] > 0 else None


class Codebooks:
    """The models of one quantized tensor (`quantized`, its model-domain `values`: an array, or a
    function giving it, called only when a family is fitted)."""

    def __init__(self, quantized: Any, values: Any = None, *, fit: str = "codelength",
                 loc: str | float = "fit", max_table: int = MAX_TABLE, fit_sample: int | None = 1 << 17,
                 seed: int = 0, histogram: SymbolHistogram | None = None) -> None:
        if fit not in FITS:
            raise ValueError(f"unknown fit {fit!r}; use one of {', '.join(FITS)}")
        if not (loc == "fit" or (isinstance(loc, (int, float)) and math.isfinite(loc))):
            raise ValueError(f"loc must be 'fit' or a finite number, got {loc!r}")
        self.quantized, self.fit, self.loc = quantized, fit, loc
        self.max_table, self.fit_sample, self.seed = max_table, fit_sample, seed
        self.symbols = as_symbols(quantized.symbols)
        self._histogram = histogram
        self._values = values
        self._sample: np.ndarray | None = None
        self._continuous: dict[str, tuple[Any, tuple[str, ...]] | ValueError] = {}
        self._codelength: dict[str, CodelengthFit | ValueError] = {}
        self._counts: dict[tuple[int, int], SymbolCounts] = {}
        self._chosen: dict[str, tuple[dict[str, float], tuple[str, ...]]] = {}

    @property
    def histogram(self) -> SymbolHistogram:
        """The symbols' histogram (the one given, else counted once here): every table's counts."""
        if self._histogram is None:
            self._histogram = SymbolHistogram(self.symbols)
        return self._histogram

    @property
    def fits(self) -> dict[str, CodelengthFit]:
        """The code-length fits made so far, by family (failed ones left out)."""
        return {k: v for k, v in self._codelength.items() if isinstance(v, CodelengthFit)}

    def sample(self) -> np.ndarray:
        """The model-domain values, or a seeded random subsample of `fit_sample` of them."""
        if self._sample is None:
            if self._values is None:
                raise ValueError("build_model: fitting a family needs the model-domain values")
            v = self._values() if callable(self._values) else self._values
            v = np.asarray(v).ravel()
            if self.fit_sample is not None and v.size > self.fit_sample:
                v = v[np.random.default_rng(self.seed).choice(v.size, self.fit_sample, replace=False)]
            self._sample = v
        return self._sample

    def continuous(self, family: str) -> tuple[Any, tuple[str, ...]]:
        """The continuous MLE (`gradstats.fit`) of `family` on `sample()` and its flags (cached)."""
        if family not in self._continuous:
            try:
                self._continuous[family] = fit_with_flags(self.sample(), family, self.loc)
            except ValueError as err:
                self._continuous[family] = err
        got = self._continuous[family]
        if isinstance(got, ValueError):
            raise got
        return got

    def _table_data(self, family: str, params: dict[str, float]) -> SymbolCounts:
        """Counts over the table a model of `family` at `params` gets (`table_range`); the family
        object (slow to build) only when the alphabet is wider than `max_table`."""
        q, h = self.quantized, self.histogram
        if q.bounds is None and h.n and h.hi - h.lo + 1 > self.max_table:
            return self._data(*table_range(make_family(family, params), q, h, self.max_table))
        return self._data(*table_range(None, q, h, self.max_table))

    def _data(self, lo: int, hi: int) -> SymbolCounts:
        if (lo, hi) not in self._counts:
            self._counts[(lo, hi)] = SymbolCounts.of(self.histogram, self.quantized, lo, hi)
        return self._counts[(lo, hi)]

    def codelength(self, family: str) -> CodelengthFit:
        """The code-length fit of canonical `family` (cached; nested families fitted first)."""
        if family in self._codelength:
            got = self._codelength[family]
            if isinstance(got, ValueError):
                raise got
            return got
        try:
            self._codelength[family] = self._fit_codelength(family)
        except ValueError as err:
            self._codelength[family] = err
            raise
        return self._codelength[family]

    def _binned_data(self) -> SymbolCounts | None:
        """The counts over the table every family shares when it needs no family to place it
        (the alphabet fits `max_table`, or the quantizer clips), else None."""
        q, h = self.quantized, self.histogram
        if q.bounds is None and h.n and h.hi - h.lo + 1 > self.max_table:
            return None
        return self._data(*table_range(None, q, h, self.max_table))

    def _fit_codelength(self, family: str) -> CodelengthFit:
        starts: list[tuple[str, dict[str, float]]] = []
        failure: ValueError | None = None
        # the histogram's own moments start the families they fit (`binned_start`); the others,
        # and a histogram they cannot start from, start from the continuous fit of the values
        data = self._binned_data() if family in BINNED_STARTS else None
        binned = binned_start(family, data, self.loc) if data is not None else None
        if binned is not None:
            starts.append(("binned", binned))
        else:
            try:
                dist, _ = self.continuous(family)
                starts.append(("values", family_params(dist)))
            except ValueError as err:
                failure = err
        for inner in self._inner(family):
            try:
                p = _embed(inner, family, self.codelength(inner).params)
            except ValueError:
                continue
            if p is not None:
                starts.append((inner, p))
        if family.startswith("zi-") and starts:
            starts += self._zero_excess_starts(family, starts)
        if not starts:
            if failure is not None and ("one distinct value" in str(failure) or "empty" in str(failure)):
                raise failure
            p = _moment_start(family, self.sample(), self.loc)
            if p is None:
                raise failure or ValueError(f"code-length fit of {family}: nothing to fit")
            starts.append(("moments", p))
        return fit_codelength(family, self._table_data(family, starts[0][1]), starts, loc=self.loc)

    def _inner(self, family: str) -> tuple[str, ...]:
        if family.startswith("zi-"):
            return (family.removeprefix("zi-"),)
        return NESTED.get(family, ())

    def _zero_excess_starts(self, family: str, starts: list) -> list[tuple[str, dict[str, float]]]:
        """Starts whose pi is the excess of the zero cell's count over the base's probability of it."""
        cells = self.quantized.cells
        h = self.histogram
        if getattr(cells, "stochastic", False) or h.n == 0:
            return []
        lo, hi = h.lo, h.hi
        e = cells.edges(lo, hi)
        i = int(np.searchsorted(e, 0.0, side="left")) - 1  # the cell (e_i, e_i+1] holding 0
        if not 0 <= i <= hi - lo:
            return []
        n0 = float(h.range_counts(lo + i, lo + i)[0][0]) / h.n
        out = []
        for label, p in starts:
            base = {k: v for k, v in p.items() if k != "pi"}
            p0 = float(cell_probs(family.removeprefix("zi-"), base, e[i:i + 2])[0])
            if n0 > p0:
                out.append((f"{label}+zeros", {**base, "pi": (n0 - p0) / max(1.0 - p0, 1e-12)}))
        return out

    def model(self, spec: Any) -> ProbabilityModel:
        """The `ProbabilityModel` of one spec (see the module docstring)."""
        if isinstance(spec, ProbabilityModel):
            return spec
        if not isinstance(spec, str):
            m = family_model(spec, self.quantized, self.histogram, max_table=self.max_table)
            m.fit = "given"
            return m
        name, fit = parse_spec(spec, self.fit)
        if name in ("histogram", "empirical"):
            return histogram_model(self.histogram, max_table=self.max_table)
        family = family_name(name)
        if fit == "values":
            dist, flags = self.continuous(family)
            m = family_model(dist, self.quantized, self.histogram, name=spec, max_table=self.max_table)
            m.flags, m.fit = flags, "values"
            return m
        params, flags = self.chosen(family)
        m = family_model(make_family(family, params), self.quantized, self.histogram, name=spec,
                         max_table=self.max_table)
        m.flags, m.fit = flags, "codelength"
        return m

    def chosen(self, family: str) -> tuple[dict[str, float], tuple[str, ...]]:
        """The parameters (and flags) of `family`'s code-length model: its own optimum or the
        chosen point of a family nested in it, whichever the bf16 parameters code shorter (cached)."""
        if family in self._chosen:
            return self._chosen[family]
        best = self.codelength(family)
        candidates, cand_flags = [best.params], [best.flags]
        for inner in self._inner(family):
            try:
                p, inner_flags = self.chosen(inner)
            except ValueError:
                continue
            p = _embed(inner, family, p)
            if p is not None:
                candidates.append(p)
                cand_flags.append(inner_flags)
        # the parameters a decoder receives (bf16) decide, so nesting holds after rounding too
        data = self._table_data(family, best.params)
        bits = np.array([data.bits(family, {k: bf16(v) for k, v in p.items()}) for p in candidates])
        # near-ties (the closed-form law and the family's own differ in the last digits): the
        # tables a decoder would build decide
        close = np.flatnonzero(bits <= bits.min() * (1 + 1e-4) + 1e-12)
        if close.size > 1:
            real = [family_model(make_family(family, candidates[i]), self.quantized, self.histogram,
                                 max_table=self.max_table).ideal_bits(self.histogram) for i in close]
            k = int(close[int(np.argmin(real))])
        else:
            k = int(close[0])
        self._chosen[family] = (candidates[k], tuple(cand_flags[k]))
        return self._chosen[family]


def build_model(spec: Any, quantized: Any, values: np.ndarray | None = None, max_table: int = MAX_TABLE,
                fit_sample: int | None = 1 << 17, seed: int = 0, *, fit: str = "codelength",
                loc: str | float = "fit") -> ProbabilityModel:
    """A model from a spec: a ProbabilityModel (as is), "histogram", a family name, or a distribution.

    Family names are fitted to the symbols under the quantizer's cells (`fit="codelength"`, the
    default, started from the histogram's binned moments or the continuous fit,
    `coders.models.codelength`) or by the continuous MLE (`fit="values"`,
    `gradstats.fit`) of `values`, the model-domain values (`quantizer.normalize(x)`), on a seeded
    random subsample of `fit_sample` of them. `loc`: "fit" or a number held fixed (both fits).
    A suffix on the name (":values", ":codelength") overrides `fit`.
    """
    return Codebooks(quantized, values, fit=fit, loc=loc, max_table=max_table, fit_sample=fit_sample,
                     seed=seed).model(spec)


__all__ = ["Codebooks", "build_model", "parse_spec", "SHAPE"]
