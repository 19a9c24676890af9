"""Fit tables: several families on one sample (`fit_all`), on every record of a capture
(`fit_capture`), and the per-layer summary of the latter (`summarize_fits`)."""
from __future__ import annotations

import fnmatch
import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from gradstats import goodness as gof
from gradstats.arrays import prepare
from gradstats.estimation import bootstrap_beta, fit

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


def fit_all(x: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), loc: str | float = "fit",
            nan_policy: str = "raise", goodness: bool = True, max_n: int | None = 200_000,
            seed: int = 0) -> pd.DataFrame:
    """Fit several families to one sample: a DataFrame with one row per family.

    Columns: family, beta, df, pi, loc, scale (NaN where a family has no such parameter), loglik,
    aic, bic, k, n, and with `goodness` the metrics of `gradstats.goodness` (ks, ad, w1, nll_bits,
    tail_log10_1e-02/-03/-04); then best (lowest BIC, see `_best_by_bic`), flags ('; '-joined),
    seconds (fit time), beta_se. `max_n` bounds the subsample of the sorting statistics.
    """
    v, n_omitted = prepare(x, nan_policy)
    rows = []
    for fam in families:
        f = fit(v, fam, loc=loc)
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
                    row.update(ks=gof.ks_statistic(v, f.dist, max_n, seed),
                               ad=gof.anderson_darling(v, f.dist, max_n, seed),
                               w1=gof.wasserstein1(v, f.dist, max_n, seed),
                               nll_bits=-f.loglik / (f.n * math.log(2.0)))
                    row.update({gof.tail_column(p): e for p, e in gof.tail_error(v, f.dist).items()})
        flags = list(f.flags)
        if n_omitted:
            flags.insert(0, f"omitted_nonfinite: {n_omitted} NaN/Inf entries dropped")
        row.update(flags="; ".join(flags), seconds=f.seconds, beta_se=f.se.get("beta", math.nan))
        rows.append(row)
    has_zeros = bool(len(v)) and int((v == 0).sum()) > 0
    _best_by_bic(rows, has_zeros)
    df = pd.DataFrame(rows)
    front = [c for c in df.columns if c not in ("flags", "seconds", "beta_se")]
    return df[[*front, "flags", "seconds", "beta_se"]]


def _select_layers(all_layers: Sequence[str], layers: str | Sequence[str] | None) -> list[str]:
    if layers is None:
        return list(all_layers)
    patterns = [layers] if isinstance(layers, str) else list(layers)
    chosen = [name for name in all_layers if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no layer matches {patterns!r}; layers are {list(all_layers)!r}")
    return chosen


def fit_capture(capture: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), every: int = 1,
                layers: str | Sequence[str] | None = None, steps: Sequence[int] | None = None,
                ranks: Sequence[int] | None = (0,), kind: str = "grad", loc: str | float = "fit",
                goodness: bool = True, max_n: int | None = 200_000, bootstrap: int = 0,
                n_jobs: int | None = None, progress: bool = True, seed: int = 0) -> pd.DataFrame:
    """Fit `families` to every (step, layer, rank) record of a capture: one row per family.

    capture: a `captures.open_capture(path)` object (or a path, opened here). Uses every
    `every`-th recorded step (or exactly `steps`), the layers matching `layers` (glob or list of
    globs), `ranks` (None: all). Records are fitted in parallel threads (`n_jobs`, default
    min(4, CPUs); numpy and torch release the GIL in the reductions) with a tqdm progress bar.
    `bootstrap` > 0 adds a percentile bootstrap interval for beta (columns beta_lo, beta_hi).
    Columns: step, layer, rank, kind, family, beta, df, pi, loc, scale, loglik, aic, bic, k, n, ks,
    ad, w1, nll_bits, tail_log10_1e-02/-03/-04, best, flags, seconds, beta_se (see `fit_all`).
    """
    from tqdm.auto import tqdm

    if isinstance(capture, (str, os.PathLike)):
        from captures import open_capture, resolve_capture_dir

        capture = open_capture(resolve_capture_dir(capture))
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    all_steps = list(capture.steps)
    chosen_steps = list(steps) if steps is not None else all_steps[::every]
    missing = sorted(set(chosen_steps) - set(all_steps))
    if missing:
        raise ValueError(f"steps {missing} are not in the capture (it has {all_steps})")
    chosen_layers = _select_layers(capture.layers, layers)
    chosen_ranks = list(capture.ranks) if ranks is None else list(ranks)
    tasks = [(s, name, r) for s in chosen_steps for name in chosen_layers for r in chosen_ranks]

    def run(task: tuple[int, str, int]) -> pd.DataFrame:
        step, name, rank = task
        try:
            values = capture.get(name, step, rank=rank, kind=kind)
        except ValueError as exc:  # e.g. the parameter had no gradient at that step
            values, missing = np.zeros(0), f"no_record: {exc}"
        else:
            missing = ""
        df = fit_all(values, families, loc=loc, nan_policy="omit", goodness=goodness, max_n=max_n, seed=seed)
        if missing:
            df["flags"] = missing
        if bootstrap > 0 and len(values):
            lo, hi = bootstrap_beta(values, bootstrap, loc=loc, seed=seed)
            df["beta_lo"] = np.where(df["family"].str.endswith("gennorm"), lo, np.nan)
            df["beta_hi"] = np.where(df["family"].str.endswith("gennorm"), hi, np.nan)
        df.insert(0, "kind", kind)
        df.insert(0, "rank", rank)
        df.insert(0, "layer", name)
        df.insert(0, "step", step)
        return df

    workers = n_jobs or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(tasks), desc="fit", unit="record", disable=not progress)
    frames: list[pd.DataFrame] = []
    if workers <= 1:
        for t in tasks:
            frames.append(run(t))
            bar.update()
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for df in pool.map(run, tasks):
                frames.append(df)
                bar.update()
    bar.close()
    if not frames:
        return pd.DataFrame(columns=["step", "layer", "rank", "kind", "family", *PARAM_COLUMNS, "loglik",
                                     "aic", "bic", "k", "n", "best", "flags"])
    return pd.concat(frames, ignore_index=True)


def summarize_fits(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per layer from a `fit_capture` DataFrame: the family most often best (by BIC) over
    steps and ranks, how often it won, the median beta of the winning GenNorm variant (or of plain
    gennorm), and the best family's median tail errors (log10 model / empirical tail probability)."""
    tail_cols = [c for c in fits.columns if c.startswith("tail_log10_")]
    rows = []
    for layer, g in fits.groupby("layer", sort=False):
        winners = g.loc[g["best"].astype(bool), "family"]
        best = winners.mode().iloc[0] if len(winners) else None
        # beta of the winning GenNorm variant (zi-gennorm or gennorm), else of plain gennorm
        gn = g[g["family"] == (best if best and best.endswith("gennorm") else "gennorm")]
        row = {"layer": layer, "records": int(g[["step", "rank"]].drop_duplicates().shape[0]),
               "best": best, "best_share": float((winners == best).mean()) if best else math.nan,
               "beta": float(gn["beta"].median()) if len(gn) else math.nan}
        bg = g[g["family"] == best] if best else g.iloc[:0]
        row.update({c: float(bg[c].median()) if len(bg) else math.nan for c in tail_cols})
        rows.append(row)
    return pd.DataFrame(rows)
