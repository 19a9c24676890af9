"""The report's tables as DataFrames: fits per layer, bits per entry per model / coder, comparison.

Data first (house style): each function returns a DataFrame; `analysis.report` renders them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from coders.wire import BF16_BITS

TAIL_COLUMNS = ("tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04")
WHOLE_MODEL = "whole model"
TOTAL_LAYER = "TOTAL"  # coders.report.code_capture's whole-model rows


def best_family(fits: pd.DataFrame) -> pd.Series:
    """Per fit group (step, layer, rank): the family marked best (by BIC), as one row per group.

    `best` is a per-row boolean (the contract of `fit_capture`) or the best family's name; without
    it the lowest BIC wins.
    """
    keys = [k for k in ("step", "layer", "rank") if k in fits.columns]
    if "best" in fits.columns and fits["best"].dtype == bool:
        b = fits[fits["best"]]
    elif "best" in fits.columns:
        b = fits[fits["family"].astype(str) == fits["best"].astype(str)]
    else:
        b = fits.loc[fits.groupby(keys)["bic"].idxmin()]
    return b.drop_duplicates(keys).set_index(keys)["family"]


FLAG_NAME = re.compile(r"(?:^|;)\s*([A-Za-z_]\w*):")


def flag_names(flags: pd.Series) -> str:
    """The distinct fit flag names ("beta_at_lower_bound", "ties_at_loc", ...) in `flags`, comma-separated.

    A flag string is "name: explanation; name: explanation" (`gradstats.fit`); a GenNorm beta at its
    bound or a continuous fit of a layer with an atom at 0 must not be read as a shape estimate.
    """
    # explanations may hold ";" themselves, so a name is an identifier right after the start or a ";"
    names = {m for text in flags.fillna("").astype(str) for m in FLAG_NAME.findall(text)}
    return ", ".join(sorted(names))


def fit_table(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: best family (most often best over steps), its share, GenNorm beta, tail errors.

    Tail error at p = log10(model P(|X-loc| > t_p) / p), t_p the empirical (1-p)-quantile of
    |x - loc| (0 is exact, -1 means the model predicts 10x too few exceedances), averaged over
    steps. Columns `tail <p>` are the best family's; `|tail| <family>` is each family's mean
    absolute tail error over the p the sample resolves.
    """
    if fits is None or fits.empty:
        raise ValueError("fit table: no fits")
    best = best_family(fits).reset_index()
    layers = list(dict.fromkeys(fits["layer"]))
    fams = [f for f in ("normal", "laplace", "gennorm", "zi-gennorm") if (fits["family"] == f).any()]
    tails = [c for c in TAIL_COLUMNS if c in fits.columns]
    rows = []
    for layer in layers:
        counts = best[best["layer"] == layer]["family"].value_counts()
        top = counts.index[0] if len(counts) else ""
        row = {"layer": layer, "best family": top,
               "best share": counts.iloc[0] / counts.sum() if len(counts) else np.nan}
        f = fits[fits["layer"] == layer]
        g = f[f["family"].astype(str) == "gennorm"]
        row["GenNorm beta"] = float(g["beta"].median()) if len(g) and "beta" in g else np.nan
        if len(g) and "flags" in g:
            row["GenNorm flags"] = flag_names(g["flags"])
        z = f[f["family"].astype(str) == "zi-gennorm"]
        if len(z):
            row["ZI-GenNorm beta"] = float(z["beta"].median())
            row["zeros (pi)"] = float(z["pi"].median())
        b = f[f["family"].astype(str) == top]
        for col in tails:
            row[f"tail {col.rsplit('_', 1)[-1]}"] = float(b[col].mean()) if len(b) else np.nan
        for fam in fams:
            ff = f[f["family"].astype(str) == fam]
            vals = np.abs(ff[tails].to_numpy(dtype=float)) if tails else np.empty(0)
            if np.isfinite(vals).any():  # blank when no tail probability is resolved
                row[f"|tail| {fam}"] = float(np.nanmean(vals))
        rows.append(row)
    return pd.DataFrame(rows)


COMPARE_COLUMNS = ("method", "optimizer", "lr", "pattern", "allreduce_compatible", "can_overlap", "workers",
                   "final_metric", "target", "steps_to_target", "time_to_target_s", "bits_up", "bits_down",
                   "up_ratio_vs_bf16", "compress_s", "decompress_s", "compute_s", "comm_s", "iter_s",
                   "iter_overlap_s", "speedup_vs_bf16")
NOT_REACHED = "not reached"


def compare_table(summary: pd.DataFrame, columns: tuple[str, ...] = COMPARE_COLUMNS) -> pd.DataFrame:
    """The comparison summary for display: the `columns` present, time to target "not reached" when NaN.

    A method that never reaches the target has no time to it; printing NaN (or a step count of the
    last evaluation) would read as a number.
    """
    if "method" not in summary.columns:
        raise ValueError("compare table: summary lacks the 'method' column")
    t = summary[[c for c in columns if c in summary.columns]].copy()
    if "steps_to_target" in t:
        t["steps_to_target"] = [NOT_REACHED if pd.isna(v) else str(int(v)) for v in t["steps_to_target"]]
    if "time_to_target_s" in t:
        t["time_to_target_s"] = [NOT_REACHED if pd.isna(v) else f"{v:.4g}" for v in t["time_to_target_s"]]
    return t


def _weights(bits: pd.DataFrame, capture_summary: pd.DataFrame | None) -> pd.Series | None:
    """Entries per layer, to weight per-layer bits into whole-model bits."""
    for col in ("n", "numel", "entries"):
        if col in bits.columns:
            return bits.groupby("layer", sort=False)[col].mean()
    if capture_summary is not None and "layer" in capture_summary.columns:
        for col in ("stored", "stored_entries", "numel"):
            if col in capture_summary.columns:
                return capture_summary.set_index("layer")[col].astype(float)
    return None


def bits_value_column(bits: pd.DataFrame) -> str:
    """`total_bits_per_entry` (quantizer side information included) when present, else `bits_per_entry`."""
    return "total_bits_per_entry" if "total_bits_per_entry" in bits.columns else "bits_per_entry"


def bits_table(bits: pd.DataFrame, capture_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Bits per entry per layer (rows) for each model / coder (columns), the entropy, and the model total.

    Values are averaged over steps. The whole-model row is `code_capture`'s per-step total (layer
    TOTAL: bits summed over layers / entries summed) when present, else layers weighted by their
    entries. `vs bf16` is 16 / (bits of the best model/coder).
    """
    need = ("layer", "model", "coder", "bits_per_entry", "entropy")
    missing = [c for c in need if c not in bits.columns]
    if missing:
        raise ValueError(f"bits table: bits DataFrame lacks columns {missing}")
    value = bits_value_column(bits)
    b = bits.assign(mc=bits["model"].astype(str) + "/" + bits["coder"].astype(str))
    total = b[b["layer"] == TOTAL_LAYER]
    b = b[b["layer"] != TOTAL_LAYER]
    layers = list(dict.fromkeys(b["layer"]))
    t = b.pivot_table(index="layer", columns="mc", values=value, aggfunc="mean").reindex(layers)
    t.columns.name = None
    t["entropy"] = b.groupby("layer", sort=False)["entropy"].mean().reindex(layers)
    if len(total):
        row = total.groupby("mc")[value].mean()
        row["entropy"] = total["entropy"].mean()
        t.loc[WHOLE_MODEL] = row.reindex(t.columns)
    else:
        w = _weights(bits, capture_summary)
        if w is not None:
            w = w.reindex(layers).fillna(0.0)
            if w.sum() > 0:
                t.loc[WHOLE_MODEL] = t.mul(w, axis=0).sum() / w.sum()
    coded = [c for c in t.columns if c != "entropy"]
    t["best"] = t[coded].idxmin(axis=1)
    t["vs bf16"] = BF16_BITS / t[coded].min(axis=1)
    return t.reset_index().rename(columns={"index": "layer"})


def headline(fits: pd.DataFrame | None, bits: pd.DataFrame | None,
             capture_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per layer: best family, GenNorm beta, bits/entry of GenNorm-ANS and its ratio to bf16 (16 bits)."""
    parts = []
    if fits is not None and len(fits):
        ft = fit_table(fits)
        cols = [c for c in ("layer", "best family", "GenNorm beta", "ZI-GenNorm beta", "zeros (pi)",
                            "GenNorm flags") if c in ft.columns]
        parts.append(ft[cols].set_index("layer"))
    if bits is not None and len(bits):
        t = bits_table(bits, capture_summary).set_index("layer").drop(index=WHOLE_MODEL, errors="ignore")
        for col, label in (("gennorm/ans", "GenNorm-ANS"), ("zi-gennorm/ans", "ZI-GenNorm-ANS")):
            if col in t.columns:
                parts.append(pd.DataFrame({f"{label} bits/entry": t[col],
                                           f"{label} vs bf16": BF16_BITS / t[col]}))
    if not parts:
        raise ValueError("headline: neither fits nor bits given")
    out = pd.concat(parts, axis=1)
    out.index.name = "layer"
    return out.reset_index()
