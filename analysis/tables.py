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
    t = pd.DataFrame(rows)
    # key columns first, the long flag names last
    flags = [c for c in t.columns if c.endswith("flags")]
    return t[[c for c in t.columns if c not in flags] + flags]


COMPARE_COLUMNS = ("method", "optimizer", "lr", "pattern", "allreduce_compatible", "can_overlap", "workers",
                   "seeds", "final_metric", "final_metric_std", "reached_seeds", "target",
                   "steps_to_target", "time_to_target_s", "bits_up", "bits_down",
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
    t = t[["entropy", "best", "vs bf16", *coded]]  # key columns first
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


# --------------------------------------------------------------------------------------------
# Display tables of the report: key columns first, numbers rounded to what they can tell


def fmt_sig(v, digits: int = 3) -> str:
    """A number with `digits` significant digits, thousands separated; "" for NaN."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    v = float(v)
    if v != 0 and (abs(v) >= 10 ** digits):
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_seconds(s: float) -> str:
    """Seconds as "412 us", "3.1 ms", "2.45 s"."""
    if s is None or not np.isfinite(s):
        return ""
    for div, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(s) >= div:
            return f"{s / div:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def fmt_bits(b: float) -> str:
    """Bits as "612 kbit", "1.98 Gbit"."""
    if b is None or not np.isfinite(b):
        return ""
    for div, unit in ((1e9, "Gbit"), (1e6, "Mbit"), (1e3, "kbit")):
        if abs(b) >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.3g} bit"


def _mean_spread(mean: float, std: float, lo: float, hi: float, n: int) -> str:
    if not np.isfinite(mean):
        return ""
    if n <= 1 or not np.isfinite(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f} [{lo:.3f}, {hi:.3f}]"


def compare_display(summary: pd.DataFrame, step_times: pd.DataFrame | None = None,
                    bandwidths: tuple[float, ...] = (1.0, 10.0, 100.0)) -> pd.DataFrame:
    """The comparison as a reader needs it, one row per method, key columns first.

    metric "mean ± std [min, max]" over seeds, seeds that reached the target, steps to target,
    payload bits per worker per step up / down, the uplink ratio vs bf16, the codec time measured
    in isolation, then the modelled step time at each of `bandwidths` for the workload and each
    projected model size in `step_times`. Columns are two-level: (group, name); the run's own
    columns have the group "".
    """
    if "method" not in summary.columns:
        raise ValueError("compare display: summary lacks the 'method' column")
    metric = str(summary["metric_name"].iloc[0]) if "metric_name" in summary else "metric"
    n = summary["seeds"] if "seeds" in summary else pd.Series(1, index=summary.index)
    get = lambda c: summary[c] if c in summary else pd.Series(np.nan, index=summary.index)  # noqa: E731
    cols: dict[tuple[str, str], list] = {("", "method"): list(summary["method"])}
    cols[("", f"final {metric}")] = [_mean_spread(m, s, lo, hi, k) for m, s, lo, hi, k in zip(
        get("final_metric"), get("final_metric_std"), get("final_metric_min"), get("final_metric_max"), n,
        strict=True)]
    if "reached_seeds" in summary:
        cols[("", "reached target")] = [f"{int(r)}/{int(k)}"
                                        for r, k in zip(summary["reached_seeds"], n, strict=True)]
    cols[("", "steps to target")] = [NOT_REACHED if pd.isna(v) else f"{v:.0f}"
                                     for v in get("steps_to_target")]
    cols[("", "bits up / step")] = [fmt_bits(v) for v in get("bits_up")]
    cols[("", "bits down / step")] = [fmt_bits(v) for v in get("bits_down")]
    cols[("", "up vs bf16")] = [f"{v:.3g}x" if np.isfinite(v) else "" for v in get("up_ratio_vs_bf16")]
    cols[("", "codec (isolated)")] = [fmt_seconds(a + b) for a, b in
                                      zip(get("compress_s"), get("decompress_s"), strict=True)]
    if step_times is not None and len(step_times):
        st = step_times[step_times["bandwidth_gbps"].isin(bandwidths)]
        if "workload" in summary and "workload" in st:
            st = st[st["workload"].isin(set(summary["workload"]))]
        for model in dict.fromkeys(st["model"]):
            for bw in bandwidths:
                cell = st[(st["model"] == model) & (st["bandwidth_gbps"] == bw)].set_index("method")
                if len(cell):
                    cols[(f"modelled step time, {model}", f"{bw:g} Gbit/s")] = [
                        fmt_seconds(cell["iter_overlap_s"].get(m, np.nan)) for m in summary["method"]]
    out = pd.DataFrame(cols)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def speedup_table(step_times: pd.DataFrame,
                  bandwidths: tuple[float, ...] = (1.0, 10.0, 100.0)) -> pd.DataFrame:
    """Modelled step-time speedup vs bf16: rows methods, columns (model, bandwidth), two-level."""
    st = step_times[step_times["bandwidth_gbps"].isin(bandwidths)]
    t = st.pivot_table(index="method", columns=["model", "bandwidth_gbps"], values="speedup_vs_bf16",
                       sort=False).reindex(list(dict.fromkeys(st["method"])))
    t = t.map(lambda v: f"{v:.3g}x" if np.isfinite(v) else "")
    out = pd.DataFrame({("", "method"): list(t.index)})
    for m, b in t.columns:
        out[(f"speedup vs bf16, {m}", f"{b:g} Gbit/s")] = t[(m, b)].to_numpy()
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def codec_size_table(codec: pd.DataFrame) -> pd.DataFrame:
    """Isolated codec time per method (rows) and layer size (columns), with ns per entry at the largest."""
    layers = list(dict.fromkeys(codec["layer"]))
    size = codec.groupby("layer", sort=False)["entries"].first()
    t = codec.pivot_table(index="method", columns="layer", values="codec_ms", sort=False)
    t = t.reindex(index=list(dict.fromkeys(codec["method"])), columns=layers)
    t.columns = [f"{la} ({int(size[la]):,})" for la in layers]
    t = t.map(lambda v: fmt_seconds(v / 1e3))
    synth = codec[codec["layer"] != "workload"]
    if len(synth):
        big = synth[synth["entries"] == synth["entries"].max()].set_index("method")
        t["ns / entry (largest)"] = [fmt_sig(big["codec_ns_per_entry"].get(m, np.nan)) for m in t.index]
    return t.reset_index()


def run_details(summary: pd.DataFrame) -> pd.DataFrame:
    """How each method ran: optimizer, lr, collective, all-reduce compatibility, overlap, workers, seeds."""
    cols = [c for c in ("method", "optimizer", "lr", "pattern", "allreduce_compatible", "can_overlap",
                        "workers", "degree", "seeds", "eval_every", "backend") if c in summary.columns]
    return summary[cols]


def rd_tables(agg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rate-distortion pooled over layers, pivoted: (quantizer step x model bits, compressors).

    First: one row per quantizer step c (x RMS) with its relative error, one column of bits per
    entry per model / coder. Second: one row per compressor, bits per entry and relative error.
    """
    q = agg[agg["kind"] == "quantizer"]
    qt = q.pivot_table(index="param", columns="name", values="bits_per_entry", sort=False)
    qt = qt.reindex(sorted(qt.index, reverse=True))
    qt.columns = [str(c).replace("uniform + ", "") + " bits" for c in qt.columns]
    err = q.groupby("param")["rel_error"].mean().reindex(qt.index)
    qt.insert(0, "rel. error", err.to_numpy())
    qt = qt.reset_index().rename(columns={"param": "step c (x RMS)"})
    c = agg[agg["kind"] == "compressor"][["name", "bits_per_entry", "rel_error"]]
    c = c.rename(columns={"name": "compressor", "bits_per_entry": "bits / entry", "rel_error": "rel. error"})
    return qt, c.reset_index(drop=True)


NONPARAMETRIC = ("histogram",)  # an oracle that sends the empirical pmf as side information


def headline_bits(bits: pd.DataFrame, capture_summary: pd.DataFrame | None = None) -> dict:
    """Whole-model bits per entry of the best parametric codebook and of the histogram oracle.

    Parametric: every model / coder of the table but the histogram oracle and lossless float
    codecs (names starting "raw"); whatever new models the table holds compete. Returns
    {"best": (name, bits), "oracle": (name, bits) | None, "entropy": bits, "quantizer": text}.
    """
    t = bits_table(bits, capture_summary).set_index("layer")
    if WHOLE_MODEL not in t.index:
        raise ValueError("headline: the bits table has no whole-model row")
    row = t.loc[WHOLE_MODEL]
    coded = [c for c in t.columns if "/" in c]
    para = [c for c in coded if c.split("/")[0] not in NONPARAMETRIC and not c.startswith("raw")]
    oracle = [c for c in coded if c.split("/")[0] in NONPARAMETRIC]
    best = min(para, key=lambda c: row[c]) if para else None
    orc = min(oracle, key=lambda c: row[c]) if oracle else None
    quant = ", ".join(sorted(set(bits["quantizer"].dropna().astype(str)))) if "quantizer" in bits else ""
    return {"best": (best, float(row[best])) if best else None,
            "oracle": (orc, float(row[orc])) if orc else None,
            "entropy": float(row["entropy"]), "quantizer": quant}


def winner(summary: pd.DataFrame) -> pd.Series | None:
    """The method reaching the target soonest in modelled time, among those reaching it in every seed."""
    s = summary
    if "reached_seeds" in s and "seeds" in s:
        s = s[s["reached_seeds"] == s["seeds"]]
    s = s.dropna(subset=["time_to_target_s"]) if "time_to_target_s" in s else s.iloc[0:0]
    if s.empty:
        return None
    return s.loc[s["time_to_target_s"].idxmin()]
