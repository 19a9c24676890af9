"""Fits of a whole capture: `fit_all` on every (step, layer, rank) record, serially, in a process
pool or on a CUDA device (`fit_capture`), and the per-layer summary of the result (`summarize_fits`).

The unit of work is one record (`fit_record`): read it, fit every family, measure the goodness of
fit. Records are independent and every fit is deterministic (fixed seeds), so `captures.engine`'s
`map_records` runs them in a pool of `jobs` processes or on a Dask cluster and returns the serial
table to the last bit, in the serial order. Each worker opens the capture once from its path and
reads its own records (only the tables travel back).
"""
from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gradstats.estimation import bootstrap_beta
from gradstats.families import MIN_SHAPE_N
from gradstats.tables import PARAM_COLUMNS, fit_rows

if TYPE_CHECKING:
    from captures.progress import Progress

POOL_MIN_ENTRIES = 1 << 22
"""With `jobs=None` a capture holding fewer entries than this (4M) is fitted serially: starting a
worker (a fresh interpreter importing numpy, scipy and torch) costs seconds, more than it saves."""

_EMPTY_COLUMNS = ["step", "layer", "rank", "kind", "family", *PARAM_COLUMNS, "loglik", "aic", "bic", "k", "n",
                  "best", "flags"]


@dataclass(frozen=True)
class RecordOptions:
    """How every record of a `fit_capture` call is fitted (the arguments of `fit_all` and more)."""

    families: tuple[str, ...]
    kind: str = "grad"
    loc: str | float = "fit"
    goodness: bool = True
    max_n: int | None = 200_000
    bootstrap: int = 0
    seed: int = 0
    device: str = "cpu"
    min_shape_n: int = MIN_SHAPE_N


def fit_record(capture: Any, step: int, layer: str, rank: int, options: RecordOptions) -> pd.DataFrame:
    """The `fit_all` table of one record with its step, layer, rank and kind in front.

    A record the capture lacks (e.g. the parameter had no gradient that step) gives the rows of an
    empty sample flagged `no_record: ...`. With `options.device` other than 'cpu' the values are
    moved there first, so the fits' reductions run as torch ops on that device.
    """
    return pd.DataFrame(record_rows(capture, step, layer, rank, options))


def record_rows(capture: Any, step: int, layer: str, rank: int,
                options: RecordOptions) -> list[dict[str, Any]]:
    """The rows of `fit_record` as dicts in its column order (`fit_capture` makes one DataFrame of
    every record's rows: a DataFrame per record cost ~4 ms, as much as fitting a 512-entry layer)."""
    try:
        values = capture.get(layer, step, rank=rank, kind=options.kind, as_torch=options.device != "cpu")
    except ValueError as exc:
        values, missing = np.zeros(0), f"no_record: {exc}"
    else:
        missing = ""
        if options.device != "cpu":
            values = values.to(options.device)
    rows = fit_rows(values, options.families, loc=options.loc, nan_policy="omit", goodness=options.goodness,
                    max_n=options.max_n, seed=options.seed, min_shape_n=options.min_shape_n)
    extra: dict[str, Any] = {}
    if options.bootstrap > 0 and len(values):
        extra["beta"] = bootstrap_beta(values, options.bootstrap, loc=options.loc, seed=options.seed)
    out = []
    for r in rows:
        row = {"step": step, "layer": layer, "rank": rank, "kind": options.kind, **r}
        if missing:
            row["flags"] = missing
        if "beta" in extra:
            gn = str(r["family"]).endswith("gennorm")
            row["beta_lo"], row["beta_hi"] = (float(v) if gn else np.nan for v in extra["beta"])
        out.append(row)
    return out


def _fit_task(capture: Any, task: tuple[int, str, int], options: RecordOptions) -> list[dict[str, Any]]:
    """`record_rows` of one (step, layer, rank) task (the function `map_records` runs per record)."""
    return record_rows(capture, *task, options)


def _record_entries(capture: Any, layer: str) -> int:
    """Entries of one record of `layer` from the capture's shapes (its size for the scheduling)."""
    return int(np.prod(getattr(capture, "shapes", {}).get(layer, (0,))))


def _select_layers(all_layers: Sequence[str], layers: str | Sequence[str] | None) -> list[str]:
    if layers is None:
        return list(all_layers)
    patterns = [layers] if isinstance(layers, str) else list(layers)
    chosen = [name for name in all_layers if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no layer matches {patterns!r}; layers are {list(all_layers)!r}")
    return chosen


def _entries(capture: Any, layers: Sequence[str], n_records: int) -> int:
    """Entries to fit, estimated from the full layer shapes (an upper bound for sampled layers)."""
    shapes = getattr(capture, "shapes", {})
    per_step = sum(int(np.prod(shapes.get(name, (0,)))) for name in layers)
    return per_step * n_records // max(len(layers), 1)


def fit_capture(capture: Any, families: Sequence[str] = ("normal", "laplace", "gennorm"), every: int = 1,
                layers: str | Sequence[str] | None = None, steps: Sequence[int] | None = None,
                ranks: Sequence[int] | None = (0,), kind: str = "grad", loc: str | float = "fit",
                goodness: bool = True, max_n: int | None = 200_000, bootstrap: int = 0,
                jobs: int | None = None, device: str = "cpu", progress: Progress = True, seed: int = 0,
                n_jobs: int | None = None, min_shape_n: int = MIN_SHAPE_N, engine: str = "process",
                scheduler: Any = None) -> pd.DataFrame:
    """Fit `families` to every (step, layer, rank) record of a capture: one row per family.

    capture: a `captures.open_capture(path)` object (or a path, opened here). Uses every
    `every`-th recorded step (or exactly `steps`), the layers matching `layers` (glob or list of
    globs), `ranks` (None: all). `bootstrap` > 0 adds a percentile bootstrap interval for beta
    (columns beta_lo, beta_hi). A record under `min_shape_n` entries gets no shape (see `fit_all`).
    jobs: worker processes over records, one thread each (None: all CPUs, serial below
    `POOL_MIN_ENTRIES` entries or on a device; 1: serial in this process, one thread); the table
    equals the serial one. `n_jobs` is the old name of `jobs`. engine: "process" (this machine)
    or "dask" (a `dask.distributed` cluster at `scheduler`, an address or a Client; None: a local
    one of `jobs` workers; the capture must be at the same path on every worker), see
    `captures.engine`. device: 'cpu', or a torch device such as 'cuda' on which each record's fits
    run (the goodness statistics' subsample is evaluated on the host). progress: a bar over the
    records (True: tqdm; or a bar factory, see `captures.progress`).
    Columns: step, layer, rank, kind, family, beta, df, pi, loc, scale, loglik, aic, bic, k, n, ks,
    ad, w1, nll_bits, tail_log10_1e-02/-03/-04, best, flags, seconds, beta_se (see `fit_all`).
    """
    from captures.engine import ENGINES, map_records  # here: importing captures imports torch

    if isinstance(capture, (str, os.PathLike)):
        from captures import open_capture, resolve_capture_dir

        capture = open_capture(resolve_capture_dir(capture))
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    jobs = n_jobs if jobs is None else jobs
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1 (or None for all CPUs), got {jobs}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    all_steps = list(capture.steps)
    chosen_steps = list(steps) if steps is not None else all_steps[::every]
    missing = sorted(set(chosen_steps) - set(all_steps))
    if missing:
        raise ValueError(f"steps {missing} are not in the capture (it has {all_steps})")
    chosen_layers = _select_layers(capture.layers, layers)
    chosen_ranks = list(capture.ranks) if ranks is None else list(ranks)
    options = RecordOptions(tuple(families), kind, loc, goodness, max_n, bootstrap, seed, str(device),
                            min_shape_n)
    tasks = [(s, name, r) for s in chosen_steps for name in chosen_layers for r in chosen_ranks]

    if jobs is None and engine == "process":  # one process drives a device; on the CPU all cores
        big = _entries(capture, chosen_layers, len(tasks)) >= POOL_MIN_ENTRIES
        jobs = (os.cpu_count() or 1) if big and options.device == "cpu" else 1
    sizes = [_record_entries(capture, t[1]) for t in tasks]
    frames = map_records(partial(_fit_task, options=options), tasks, capture=capture, jobs=jobs,
                         engine=engine, scheduler=scheduler, sizes=sizes, groups=[t[1] for t in tasks],
                         device=options.device,
                         progress=progress, desc="fit", unit="record")
    rows = [row for record in frames for row in record]
    if not rows:
        return pd.DataFrame(columns=_EMPTY_COLUMNS)
    return pd.DataFrame(rows)


def summarize_fits(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per layer from a `fit_capture` DataFrame: the records fitted (those the capture
    holds; a `no_record` one is not counted), the family most often best (by BIC) over steps and
    ranks, how often it won, the median beta of the winning GenNorm variant (or of plain gennorm),
    and the best family's median tail errors (log10 model / empirical tail probability)."""
    tail_cols = [c for c in fits.columns if c.startswith("tail_log10_")]
    rows = []
    for layer, g in fits.groupby("layer", sort=False):
        winners = g.loc[g["best"].astype(bool), "family"]
        best = winners.mode().iloc[0] if len(winners) else None
        # beta of the winning GenNorm variant (zi-gennorm or gennorm), else of plain gennorm
        gn = g[g["family"] == (best if best and best.endswith("gennorm") else "gennorm")]
        present = g[~g["flags"].astype(str).str.startswith("no_record")]
        row = {"layer": layer, "records": int(present[["step", "rank"]].drop_duplicates().shape[0]),
               "best": best, "best_share": float((winners == best).mean()) if best else math.nan,
               "beta": float(gn["beta"].median()) if len(gn) else math.nan}
        bg = g[g["family"] == best] if best else g.iloc[:0]
        row.update({c: float(bg[c].median()) if len(bg) else math.nan for c in tail_cols})
        ranks = gn.groupby("rank")["beta"].median() if len(gn) else pd.Series(dtype=float)
        if len(ranks) > 1:  # several workers recorded: how far their shapes lie apart
            row.update(ranks=len(ranks), beta_rank_min=float(ranks.min()), beta_rank_max=float(ranks.max()))
        rows.append(row)
    return pd.DataFrame(rows)


def rank_spread(fits: pd.DataFrame, columns: Sequence[str] = ("beta", "scale", "pi")) -> pd.DataFrame:
    """Per (layer, family, kind): each rank's median of `columns` over steps, and their spread across
    ranks (min, max, relative std = std / |mean| over ranks), from a `fit_capture(..., ranks=None)` table.

    The question it answers: does every worker see the same distribution, i.e. can one model agreed
    by all serve each worker's codebook?
    """
    cols = [c for c in columns if c in fits.columns]
    if not cols:
        raise ValueError(f"rank_spread: the fits have none of the columns {list(columns)}")
    ok = fits[~fits["flags"].astype(str).str.startswith("no_record")]
    keys = ["layer", "family"] + (["kind"] if "kind" in ok.columns else [])
    per_rank = ok.groupby([*keys, "rank"], sort=False)[cols].median().reset_index()
    rows = []
    for key, g in per_rank.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True), ranks=len(g))
        for c in cols:
            v = g[c].dropna()
            mean = float(v.mean()) if len(v) else math.nan
            row.update({f"{c}_min": float(v.min()) if len(v) else math.nan,
                        f"{c}_max": float(v.max()) if len(v) else math.nan,
                        f"{c}_rel_std": (float(v.std(ddof=0) / abs(mean)) if len(v) > 1 and mean
                                         else math.nan)})
        rows.append(row)
    return pd.DataFrame(rows)
