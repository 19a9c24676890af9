"""Self-contained HTML report of a run directory (stage 5).

`write_report(run_dir)` reads what is present (ARCHITECTURE.md, "Run directory layout"):
`capture/` (or the directory is itself a capture), `fits.parquet`, `bits.parquet`, `rd.parquet`,
`compare.parquet`, `compare_history.parquet`, `figures/*.png`, either in `run_dir` itself or in
one sub-directory per workload (what `gradstats demo` writes), and renders one HTML page with
every image embedded as base64, so the file can be mailed or archived alone. Sections: capture
summary, fit table (best family per layer, GenNorm beta, tail errors), figures, bits-per-entry
table, rate-distortion, and the compressor comparison.
"""

from __future__ import annotations

import base64
import html
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

BF16_BITS = 16.0
SECTIONS = ("capture", "fits", "figures", "bits", "rate-distortion", "compare")
TAIL_COLUMNS = ("tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04")
DATA_FILES = ("fits.parquet", "bits.parquet", "rd.parquet")
WHOLE_MODEL = "whole model"
TOTAL_LAYER = "TOTAL"  # coders.report.code_capture's whole-model rows
FIGURE_FAMILIES = ("normal", "laplace", "gennorm", "zi-gennorm")  # overlaid in the per-layer figures


def capture_dir(unit: Path) -> Path | None:
    """The capture of a unit: `unit/capture/` (what `gradstats demo` writes) or `unit` itself
    (a `gradstats capture --out` directory that `gradstats fit` / `code` wrote their tables into)."""
    for d in (unit / "capture", unit):
        if (d / "manifest.json").exists() or any(d.glob("manifest.rank*.json")):
            return d
    return None


def _is_unit(d: Path) -> bool:
    return capture_dir(d) is not None or any((d / f).exists() for f in DATA_FILES)


def find_units(run_dir: str | Path) -> list[Path]:
    """Directories holding one workload's capture/fits/bits: `run_dir` itself and/or its children."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"run directory {root} does not exist")
    units = [root] if _is_unit(root) else []
    skip = {"figures", "capture", "steps"}  # a unit's own parts, not units
    units += sorted(d for d in root.iterdir() if d.is_dir() and d.name not in skip and _is_unit(d))
    return units


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


# --------------------------------------------------------------------------------------------
# Tables


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


# --------------------------------------------------------------------------------------------
# Figures


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def representative_layer(fits: pd.DataFrame) -> tuple[str, int]:
    """(layer, step) shown in the per-layer figures: the layer fitted on the most entries, last step."""
    g = fits[fits["family"].astype(str) == "gennorm"] if (fits["family"] == "gennorm").any() else fits
    n = g.groupby("layer", sort=False)["n"].max() if "n" in g else g.groupby("layer", sort=False).size()
    layer = str(n.idxmax())
    return layer, int(g[g["layer"] == layer]["step"].max())


def write_figures(unit: str | Path, layers: list[str] | None = None) -> list[Path]:
    """Draw every figure the data in `unit` supports into `unit/figures/` and return their paths."""
    from analysis import plots

    unit = Path(unit)
    out = unit / "figures"
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    fits, bits, rd = (_read(unit / f) for f in DATA_FILES)

    def _draw(fn, *args, name: str, **kw) -> None:
        path = out / name
        fig = fn(*args, path=path, **kw)
        fig.clear()
        made.append(path)

    if fits is not None and len(fits):
        fams = set(fits["family"].astype(str))
        # the zero-inflated fit's beta is the shape of the non-zero entries; where a layer has no
        # exact zeros it equals the plain GenNorm beta, where it has many the plain fit degenerates
        heat = "zi-gennorm" if "zi-gennorm" in fams else "gennorm" if "gennorm" in fams else None
        if heat:
            _draw(plots.plot_beta_heatmap, fits, family=heat, name="beta_heatmap.png")
        if capture_dir(unit) is not None:
            from captures import open_capture

            cap = open_capture(capture_dir(unit))
            chosen = layers or [representative_layer(fits)[0]]
            for layer in chosen:
                step = int(fits[fits["layer"] == layer]["step"].max())
                sel = fits[(fits["layer"] == layer) & (fits["step"] == step)
                           & fits["family"].astype(str).isin(FIGURE_FAMILIES)]
                if "rank" in sel:
                    sel = sel[sel["rank"] == sel["rank"].min()]
                x = cap.get(layer, step)
                title = f"{unit.name}: {layer}, step {step}"
                s = _slug(layer)
                _draw(plots.plot_density, x, sel, name=f"density_{s}.png", title=title)
                _draw(plots.plot_tail, x, sel, name=f"tail_{s}.png", title=title)
                _draw(plots.plot_qq, x, sel, name=f"qq_{s}.png", title=title)
    if bits is not None and len(bits):
        _draw(plots.plot_bits_per_layer, bits, name="bits_per_layer.png")
    if rd is not None and len(rd):
        from analysis.compare import aggregate_rd

        _draw(plots.plot_rate_distortion, aggregate_rd(rd), name="rate_distortion.png")
    return made


def write_compare_figures(run_dir: str | Path) -> list[Path]:
    """Accuracy vs bits and vs simulated time from `compare_history.parquet` into `run_dir/figures/`."""
    from analysis import plots

    root = Path(run_dir)
    hist, summ = _read(root / "compare_history.parquet"), _read(root / "compare.parquet")
    if hist is None or summ is None:
        return []
    metric = str(summ["metric_name"].iloc[0]) if "metric_name" in summ else "accuracy"
    net = _network_line(root)
    from analysis.compare import bandwidth_sweep

    out = root / "figures"
    paths = [out / "metric_vs_bits.png", out / "metric_vs_time.png", out / "time_vs_bandwidth.png"]
    plots.plot_metric_vs_bits(hist, metric_name=metric, path=paths[0]).clear()
    plots.plot_metric_vs_time(hist, metric_name=metric, network=net, path=paths[1]).clear()
    plots.plot_iteration_time_vs_bandwidth(bandwidth_sweep(summ), path=paths[2]).clear()
    return paths


def _network_line(root: Path) -> str | None:
    p = root / "network.json"
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return f"{d['bandwidth_gbps']:g} Gbit/s, {d['latency_us']:g} us latency"


# --------------------------------------------------------------------------------------------
# HTML

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td { white-space: nowrap; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 48%; }
figure img { max-width: 100%; border: 1px solid #eee; }
table { display: block; overflow-x: auto; max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; text-align: center; }
.note { color: #666; font-style: italic; }
nav a { margin-right: 1em; }
"""


def _table(df: pd.DataFrame, digits: int = 3) -> str:
    return df.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.{digits}g}",
                      classes="data")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = html.escape(path.stem.replace("_", " "))
    return (f'<figure><img alt="{cap}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>")


FIGURE_ORDER = ("density", "tail", "qq", "beta", "bits", "rate")


def _figure_order(path: Path) -> tuple[int, str]:
    """Per-layer figures first (density, tail, QQ), then the per-capture ones, each group by name."""
    kind = next((i for i, k in enumerate(FIGURE_ORDER) if path.name.startswith(k)), len(FIGURE_ORDER))
    return kind, path.name


def _section(kind: str, unit: str, title: str, body: str) -> str:
    sid = f"{kind}-{_slug(unit)}" if unit else kind
    return f'<section id="{sid}" class="section-{kind}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _missing(what: str) -> str:
    return f'<p class="note">{html.escape(what)} not present in this run.</p>'


def _unit_sections(unit: Path, name: str) -> list[str]:
    out = []
    summary = None
    if capture_dir(unit) is not None:
        from captures import open_capture

        cap = open_capture(capture_dir(unit))
        summary = cap.summary()
        m = cap.manifest
        meta = {k: m[k] for k in ("model", "seed", "device", "world_size", "torch_version", "every", "sample")
                if k in m}
        info = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in meta.items())
        body = (f"<ul>{info}<li><b>steps</b>: {html.escape(str(cap.steps))}</li>"
                f"<li><b>ranks</b>: {html.escape(str(cap.ranks))}</li></ul>" + _table(summary))
    else:
        body = _missing("A capture")
    out.append(_section("capture", name, f"Capture summary ({name})", body))

    fits, bits, rd = (_read(unit / f) for f in DATA_FILES)
    if fits is not None and len(fits):
        body = ("<p>Best family by BIC per layer (share of steps where it won), median GenNorm "
                "&beta; (2 = Normal, 1 = Laplace; <i>GenNorm flags</i> names a fit at its &beta; bound "
                "or one facing an atom of exact zeros, where the zero-inflated &beta; is the shape to "
                "read), "
                "fraction of exact zeros, and tail errors "
                "log<sub>10</sub>(model / empirical P(|X-loc| &gt; t<sub>p</sub>)): at p = 1e-2, 1e-3, "
                "1e-4 for the best family, and as the mean absolute value over the resolved p for each "
                "family; averaged over steps, blank where the sample is too small to resolve p.</p>"
                + _table(fit_table(fits)))
    else:
        body = _missing("fits.parquet")
    out.append(_section("fits", name, f"Distribution fits ({name})", body))

    figs = sorted((unit / "figures").glob("*.png"), key=_figure_order) if (unit / "figures").is_dir() else []
    body = "\n".join(_img(p) for p in figs) if figs else _missing("Figures")
    out.append(_section("figures", name, f"Figures ({name})", body))

    if bits is not None and len(bits):
        body = ("<p>Achieved bits per entry (payload + side information of the model and the quantizer) "
                "per probability model / entropy coder, averaged over steps; the raw bf16 baseline is "
                "16 bits per entry.</p>"
                + _table(bits_table(bits, summary)))
    else:
        body = _missing("bits.parquet")
    out.append(_section("bits", name, f"Bits per entry ({name})", body))

    if rd is not None and len(rd):
        from analysis.compare import aggregate_rd

        agg = aggregate_rd(rd)[["kind", "name", "param", "bits_per_entry", "rel_error"]]
        steps = sorted(set(rd["step"])) if "step" in rd.columns else []
        body = ("<p>Compressors (exact wire bits) and quantizer + codebook pairs (uniform step c &times; "
                "RMS, side information included) on the same captured gradients"
                + (f" (step {', '.join(map(str, steps))})" if steps else "")
                + ", pooled over layers: total bits / entries and ||x - x&#770;|| / ||x||.</p>"
                + _table(agg.rename(columns={"param": "c"})))
        out.append(_section("rate-distortion", name, f"Rate-distortion ({name})", body))
    return out


def _compare_setup(summ: pd.DataFrame) -> str:
    """One paragraph: workload, workers, steps, target rule and the baseline of the comparison."""
    first = summ.iloc[0]
    base = str(first["baseline"]) if "baseline" in summ else "bf16"
    metric = str(first["metric_name"]) if "metric_name" in summ else "metric"
    parts = []
    for col, fmt in (("workload", "workload {}"), ("workers", "{} workers"), ("steps", "{} steps each"),
                     ("backend", "backend {}")):
        if col in summ:
            parts.append(fmt.format(int(first[col]) if col in ("workers", "steps") else first[col]))
    if "eval_every" in summ:
        parts.append(f"evaluated every {int(first['eval_every'])} steps")
    target = f" Target {metric}: {float(first['target']):.4g}" if "target" in summ else ""
    return (f"<p>{html.escape(', '.join(parts))}.{html.escape(target)} (95% of the {html.escape(base)} "
            f"baseline's final {html.escape(metric)} unless set); <i>steps_to_target</i> is the first "
            f"evaluated step at or past it, <i>{NOT_REACHED}</i> when no evaluation got there. Each method "
            "runs with its own optimizer and learning rate (columns <i>optimizer</i>, <i>lr</i>): the "
            "rule of its reference implementation, e.g. local Nesterov momentum for gossip methods, "
            "momentum before the sign for Signum.</p>")


def write_report(run_dir: str | Path, figures: bool = True, title: str | None = None) -> Path:
    """Write `run_dir/report.html` from what the run directory holds and return its path.

    figures=True draws the figures the data supports first (into each unit's `figures/`).
    """
    root = Path(run_dir)
    units = find_units(root)
    has_compare = (root / "compare.parquet").exists()
    if not units and not has_compare:
        raise ValueError(f"{root} holds no capture/, fits, bits or compare results to report on")
    if figures:
        for u in units:
            try:
                write_figures(u)
            except (ValueError, KeyError) as exc:  # report what is there even if one figure cannot be drawn
                warnings.warn(f"figures for {u}: {exc}", stacklevel=2)
        if has_compare:
            write_compare_figures(root)

    parts = []
    for u in units:
        parts += _unit_sections(u, u.name if u != root else root.name)

    if has_compare:
        summ = _read(root / "compare.parquet")
        net = root / "network.json"
        desc = json.loads(net.read_text())["model"] if net.exists() else ""
        figs = [root / "figures" / n for n in ("metric_vs_bits.png", "metric_vs_time.png",
                                                 "time_vs_bandwidth.png")]
        body = (f"<p>{html.escape(desc)}. Bits are payload per worker per step; times are seconds per "
                "step: compute measured (one worker, one forward + backward), compression measured in "
                "the run (in the simulator the W workers share this machine's cores, which inflates it), "
                "communication modelled. <i>iter_overlap_s</i> lets communication overlap the backward "
                "pass where the method allows it. The baseline is bf16 all-reduce.</p>"
                + _compare_setup(summ)
                + _table(compare_table(summ), digits=4)
                + "\n".join(_img(p) for p in figs if p.exists()))
    else:
        body = _missing("A compressor comparison (compare.parquet)")
    parts.append(_section("compare", "", "Compressor comparison", body))

    head = title or f"gradstats report: {root.name}"
    nav = "".join(f'<a href="#{s.split(chr(34))[1]}">{s.split(chr(34))[1]}</a>' for s in parts)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(head)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(head)}</h1>\n<nav>{nav}</nav>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = root / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
