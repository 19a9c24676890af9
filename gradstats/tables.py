"""The fit table of one sample: several families, their goodness of fit and the best by BIC (`fit_all`).

The work the families share is done once per sample: one `goodness.Sample` (one sorted subsample,
the top order statistics of |x - loc|), one count of exact zeros, one copy of the non-zero
entries, and the base fit of a zero-inflated family (the plain family's own fit when the sample
has no zeros).
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd

from gradstats import goodness as gof
from gradstats.arrays import count_equal, prepare
from gradstats.estimation import Fit, fit, zero_inflate
from gradstats.families import MIN_SHAPE_N, family_name

PARAM_COLUMNS = ("beta", "df", "pi", "loc", "scale")


def _best_by_bic(rows: list[dict], has_zeros: bool) -> None:
    """Mark the row with the lowest BIC. When the sample holds exact zeros and zero-inflated
    families were fitted, only those compete: a continuous density gives the atom at 0 zero
    probability, so its likelihood is not comparable with one that counts log pi per zero."""
    pool = [r for r in rows if math.isfinite(r["bic"])]
    if has_zeros and any(r["family"].startswith("zi-") for r in pool):
        pool = [r for r in pool if r["family"].startswith("zi-")]
    best = min(pool, key=lambda r: r["bic"]) if pool else None
    for r in rows:
        r["best"] = r is best


LAST_COLUMNS = ("flags", "seconds", "beta_se")
"""The columns `fit_all` puts last, after `best`."""


def fit_all(x: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), loc: str | float = "fit",
            nan_policy: str = "raise", goodness: bool = True, max_n: int | None = 200_000,
            seed: int = 0, min_shape_n: int = MIN_SHAPE_N) -> pd.DataFrame:
    """Fit several families to one sample: a DataFrame with one row per family (`fit_rows`)."""
    return pd.DataFrame(fit_rows(x, families, loc, nan_policy, goodness, max_n, seed, min_shape_n))


def fit_rows(x: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), loc: str | float = "fit",
             nan_policy: str = "raise", goodness: bool = True, max_n: int | None = 200_000,
             seed: int = 0, min_shape_n: int = MIN_SHAPE_N) -> list[dict[str, Any]]:
    """The rows of `fit_all`, one dict per family with its keys in the table's column order (a
    whole-capture fit builds one DataFrame from every record's rows instead of one per record).

    Columns: family, beta, df, pi, loc, scale (NaN where a family has no such parameter), loglik,
    aic, bic, k, n, and with `goodness` the metrics of `gradstats.goodness` (ks, ad, w1, nll_bits,
    tail_log10_1e-02/-03/-04); then best (lowest BIC, see `_best_by_bic`), flags ('; '-joined),
    seconds (fit time), beta_se. `max_n` bounds the subsample of the sorting statistics; a shape
    family on fewer than `min_shape_n` entries is not fitted (flag `too_small`, NaN parameters).
    """
    v, n_omitted = prepare(x, nan_policy)
    n = len(v)
    n_zero = count_equal(v, 0.0) if n else 0
    sample = gof.Sample(v, max_n, seed) if goodness and n else None
    fitted: dict[str, Fit] = {}  # plain families on v
    nonzero_fits: dict[str, Fit] = {}  # base families on the non-zero entries
    nonzero = None

    def fit_one(sample: Any, family: str) -> Fit:
        return fit(sample, family, loc=loc, min_shape_n=min_shape_n)

    rows = []
    for fam in families:
        name = family_name(fam)
        if name.startswith("zi-") and n:
            # ZeroInflated(base): the base fitted once on the non-zeros; without zeros those are
            # all of v, so the plain family's fit serves (and vice versa)
            base = name.removeprefix("zi-")
            t0 = time.perf_counter()
            if n_zero == 0:
                fitted[base] = base_fit = fitted.get(base) or fit_one(v, base)
            elif n_zero == n:
                base_fit = None
            else:
                nonzero = v[v != 0] if nonzero is None else nonzero
                nonzero_fits[base] = base_fit = nonzero_fits.get(base) or fit_one(nonzero, base)
            f = zero_inflate(name, base_fit, n, n_zero, t0=t0)
        else:
            fitted[name] = f = fitted.get(name) or fit_one(v, name)
        row: dict[str, Any] = {"family": f.family}
        row.update({p: f.params.get(p, math.nan) for p in PARAM_COLUMNS})
        row.update(loglik=f.loglik, aic=f.aic, bic=f.bic, k=f.k, n=f.n)
        if goodness:
            cols = ["ks", "ad", "w1", "nll_bits"] + [gof.tail_column(p) for p in gof.TAIL_PS]
            if f.dist is None:
                row.update({c: math.nan for c in cols})
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    row.update(gof.distances(sample, f.dist, max_n, seed))
                    row.update(nll_bits=-f.loglik / (f.n * math.log(2.0)))
                    row.update({gof.tail_column(p): e for p, e in gof.tail_error(sample, f.dist).items()})
        flags = list(f.flags)
        if n_omitted:
            flags.insert(0, f"omitted_nonfinite: {n_omitted} NaN/Inf entries dropped")
        row.update(flags="; ".join(flags), seconds=f.seconds, beta_se=f.se.get("beta", math.nan))
        rows.append(row)
    has_zeros = n_zero > 0
    _best_by_bic(rows, has_zeros)
    # best (set last) before flags, seconds, beta_se
    return [{**{k: v for k, v in r.items() if k not in LAST_COLUMNS}, **{k: r[k] for k in LAST_COLUMNS}}
            for r in rows]
