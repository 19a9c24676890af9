"""Figures of the coding stage: bits per layer, bits vs entropy, the gap broken down, bits over steps, R-D.

They read `coders.report.code_capture`'s DataFrame (one row per step, layer, model, coder; layer
"TOTAL" rows are whole-model totals) and `analysis.rate_distortion`'s. Models are colours
(`model_color`), coders marker shapes, in every figure; new models or coders in the table appear
without a change here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plots.style import (
    FULL_WIDTH_IN,
    HALF_WIDTH_IN,
    coder_marker,
    finish,
    legend_below,
    method_color,
    model_color,
    paper_style,
    require,
    short_name,
)

TOTAL_LAYER = "TOTAL"  # code_capture's whole-model rows
BITS_COLUMNS = ("layer", "model", "coder", "bits_per_entry", "entropy")


def _value(bits: pd.DataFrame) -> str:
    return "total_bits_per_entry" if "total_bits_per_entry" in bits.columns else "bits_per_entry"


def _pairs(bits: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(bits["model"].astype(str), bits["coder"].astype(str), strict=True)))


def _layer_order(bits: pd.DataFrame, sizes: dict[str, int] | None) -> list[str]:
    layers = list(dict.fromkeys(bits["layer"]))
    if sizes:
        layers.sort(key=lambda la: -sizes.get(la, 0))
    return layers


def _layer_labels(layers: list[str], sizes: dict[str, int] | None) -> list[str]:
    return [f"{short_name(la)} ({sizes[la]:,})" if sizes and la in sizes else short_name(la) for la in layers]


def plot_bits_per_layer(bits: pd.DataFrame, baseline_bits: float | None = None,
                        sizes: dict[str, int] | None = None, path: str | Path | None = None) -> Figure:
    """Achieved bits per entry per layer for each model and coder, against the empirical entropy.

    One row per layer (largest on top when `sizes` is given), one marker per model (colour) and
    coder (shape), averaged over steps and ranks; side information included
    (`total_bits_per_entry` when the frame has it). The black bar is the empirical entropy of the
    symbols, the limit any model / coder pair can reach without side information. Layers are
    categories: nothing joins them.
    """
    require(bits, BITS_COLUMNS, "bits")
    bits = bits[bits["layer"] != TOTAL_LAYER]
    value = _value(bits)
    layers = _layer_order(bits, sizes)
    agg = bits.groupby(["layer", "model", "coder"], sort=False)[value].mean()
    ent = bits.groupby("layer", sort=False)["entropy"].mean().reindex(layers)
    pairs = _pairs(bits)
    with paper_style():
        fig = Figure(figsize=(FULL_WIDTH_IN, 1.9 + 0.38 * len(layers)))
        ax = fig.add_subplot()
        step = 0.7 / max(len(pairs), 1)
        for k, (model, coder) in enumerate(pairs):
            s = agg.xs((model, coder), level=("model", "coder")).reindex(layers)
            y = np.arange(len(layers)) + (k - (len(pairs) - 1) / 2) * step
            ax.plot(s.to_numpy(), y, ls="none", marker=coder_marker(coder), ms=6, color=model_color(model),
                    mec="white", mew=0.5, label=f"{model} / {coder}")
        ax.plot(ent.to_numpy(), np.arange(len(layers)), ls="none", marker="|", ms=18, mew=2.5, color="black",
                label="empirical entropy")
        if baseline_bits is not None:
            ax.axvline(baseline_bits, color="0.4", lw=1, ls=":", label=f"raw {baseline_bits:g} bits")
        ax.set_yticks(np.arange(len(layers)))
        ax.set_yticklabels(_layer_labels(layers, sizes), fontsize=8)
        ax.set_ylim(len(layers) - 0.5, -0.5)
        ax.set_ylabel("layer (entries)" if sizes else "layer")
        ax.set_xlabel("bits per entry")
        ax.set_title("Achieved bits per entry vs entropy, per layer", fontsize=11)
        legend_below(ax, ncol=min(6, len(pairs) + 1), fontsize=8)
    return finish(fig, path)


def plot_bits_vs_entropy(bits: pd.DataFrame, sizes: dict[str, int] | None = None,
                         path: str | Path | None = None) -> Figure:
    """Achieved bits per entry against the empirical entropy, one point per (layer, model, coder).

    The marker area is proportional to the layer's entries (the layers that decide the model's
    total are the big points); the dashed line y = x is the entropy bound, so the height above it
    is what the model / coder pair loses on that layer. Averaged over steps.
    """
    require(bits, BITS_COLUMNS, "bits")
    b = bits[bits["layer"] != TOTAL_LAYER]
    value = _value(b)
    agg = b.groupby(["layer", "model", "coder"], sort=False).agg(bits=(value, "mean"),
                                                                 entropy=("entropy", "mean")).reset_index()
    if sizes:
        n = agg["layer"].map(sizes).astype(float)
    elif "n" in b.columns:
        n = agg["layer"].map(b.groupby("layer")["n"].mean()).astype(float)
    else:
        n = pd.Series(1.0, index=agg.index)
    area = 20 + 400 * np.sqrt(n / n.max())
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 5.0))
        ax = fig.add_subplot()
        for model, coder in _pairs(agg):
            m = (agg["model"].astype(str) == model) & (agg["coder"].astype(str) == coder)
            ax.scatter(agg.loc[m, "entropy"], agg.loc[m, "bits"], s=area[m], marker=coder_marker(coder),
                       color=model_color(model), alpha=0.65, edgecolor="white", lw=0.5,
                       label=f"{model} / {coder}")
        # each axis spans its own data (entropies are a few bits, achieved bits may reach 16+)
        xhi = float(agg["entropy"].max()) * 1.1
        yhi = float(max(agg["bits"].max(), agg["entropy"].max())) * 1.05
        top = min(xhi, yhi)
        ax.plot([0, top], [0, top], "--", color="0.3", lw=1, label="entropy bound (y = x)")
        ax.set_xlim(0, xhi)
        ax.set_ylim(0, yhi)
        ax.set_xlabel("empirical entropy of the symbols (bits per entry)")
        ax.set_ylabel("achieved bits per entry")
        ax.set_title("Achieved bits vs entropy per layer\n(marker area ~ layer entries)", fontsize=10)
        legend_below(ax, ncol=2, fontsize=8, markerscale=0.5)
    return finish(fig, path)


def whole_model_bits(bits: pd.DataFrame, sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """Per (step, model, coder): whole-model bits per entry and their parts, weighted by entries.

    `code_capture`'s TOTAL rows when present, else the layers weighted by `n` (or `sizes`).
    Columns: step, model, coder, entropy, cross_entropy, payload, side, total (all per entry).
    """
    require(bits, BITS_COLUMNS, "bits")
    cols = {"entropy": "entropy", "cross_entropy": "cross_entropy", "payload": "payload_bits_per_entry",
            "side": "side_bits_per_entry", "qside": "quantizer_side_bits_per_entry", "total": _value(bits)}
    cols = {k: v for k, v in cols.items() if v in bits.columns}
    keys = [k for k in ("step", "model", "coder") if k in bits.columns]
    total = bits[bits["layer"] == TOTAL_LAYER]
    if len(total):
        out = total.groupby(keys, sort=False)[list(cols.values())].mean()
    else:
        b = bits[bits["layer"] != TOTAL_LAYER]
        w = (b["n"] if "n" in b.columns else b["layer"].map(sizes or {}).fillna(1.0)).astype(float)
        wsum = w.groupby([b[k] for k in keys], sort=False).sum()
        out = b[list(cols.values())].mul(w, axis=0).groupby([b[k] for k in keys], sort=False).sum()
        out = out.div(wsum, axis=0)
    out = out.rename(columns={v: k for k, v in cols.items()}).reset_index()
    if "qside" in out:
        out["side"] = out.get("side", 0.0) + out.pop("qside")
    return out


GAP_PARTS = (("entropy", "entropy of the symbols", "0.75"),
             ("mismatch", "model mismatch (cross-entropy - entropy)", "#d62728"),
             ("coder", "coder overhead (payload - cross-entropy)", "#ff7f0e"),
             ("side", "side information (model + quantizer)", "#1f77b4"))


def gap_parts(bits: pd.DataFrame, sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """Whole-model bits per entry per model / coder split into entropy + mismatch + coder + side.

    mismatch = cross-entropy - entropy (what the model's probabilities cost over the empirical
    ones), coder = payload - cross-entropy (the coder's own overhead), side = side information;
    they add up to the total bits per entry. Averaged over steps.
    """
    w = whole_model_bits(bits, sizes)
    g = w.groupby(["model", "coder"], sort=False).mean(numeric_only=True).reset_index()
    if "cross_entropy" not in g:
        g["cross_entropy"] = g["entropy"]
    if "payload" not in g:
        g["payload"] = g["total"] - g.get("side", 0.0)
    g["mismatch"] = g["cross_entropy"] - g["entropy"]
    g["coder_overhead"] = g["payload"] - g["cross_entropy"]
    g["side"] = g["side"] if "side" in g else g["total"] - g["payload"]
    return g[["model", "coder", "entropy", "mismatch", "coder_overhead", "side", "total"]]


def plot_gap_breakdown(bits: pd.DataFrame, sizes: dict[str, int] | None = None,
                       path: str | Path | None = None) -> Figure:
    """Whole-model bits per entry of each model / coder as stacked bars: entropy, mismatch, coder, side.

    The grey part is the floor no code of these symbols goes below; the coloured parts are the
    gap, broken down into what the model's probabilities cost (mismatch), what the coder adds
    beyond the model's cross-entropy, and the side information it sends. Bars sorted by total.
    """
    g = gap_parts(bits, sizes).sort_values("total", ascending=False)
    labels = [f"{m} / {c}" for m, c in zip(g["model"], g["coder"], strict=True)]
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 1.8 + 0.42 * len(g)))
        ax = fig.add_subplot()
        y = np.arange(len(g))
        left = np.zeros(len(g))
        for key, label, color in GAP_PARTS:
            col = "coder_overhead" if key == "coder" else key
            w = g[col].to_numpy(dtype=float)
            # a part below 0 (a coder a hair under the cross-entropy) is drawn as 0; totals stay exact
            w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
            ax.barh(y, w, left=left, color=color, label=label, height=0.65)
            left += w
        ax.plot(g["total"], y, "k|", ms=16, mew=2, label="total (side info included)")
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlabel("whole-model bits per entry")
        ax.set_title("Where the bits go: entropy and the gap", fontsize=11)
        legend_below(ax, ncol=1, fontsize=8)
    return finish(fig, path)


def plot_bits_over_steps(bits: pd.DataFrame, sizes: dict[str, int] | None = None,
                         path: str | Path | None = None) -> Figure:
    """Whole-model bits per entry of each model / coder at each recorded training step, and the entropy.

    Shows whether a codebook fitted at one step keeps its rate as the gradients change in training.
    """
    w = whole_model_bits(bits, sizes)
    if "step" not in w:
        raise ValueError("bits over steps: the bits DataFrame has no 'step' column")
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 4.6))
        ax = fig.add_subplot()
        for model, coder in _pairs(w):
            g = w[(w["model"].astype(str) == model) & (w["coder"].astype(str) == coder)].sort_values("step")
            ax.plot(g["step"], g["total"], marker=coder_marker(coder), color=model_color(model), ms=5,
                    label=f"{model} / {coder}")
        e = w.groupby("step")["entropy"].mean().sort_index()
        ax.plot(e.index, e.to_numpy(), "k--", lw=2, label="empirical entropy")
        ax.set_xlabel("training step")
        ax.set_ylabel("whole-model bits per entry")
        ax.set_title("Bits per entry over training", fontsize=11)
        legend_below(ax, ncol=2, fontsize=8)
    return finish(fig, path)


def plot_rate_distortion(rd: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Rate-distortion: bits per entry vs relative error ||x - x_hat|| / ||x|| on the same gradients.

    Rows of kind "quantizer" are joined into one curve per `name` (a quantizer + codebook over its
    settings `param`, e.g. step sizes); rows of kind "compressor" are one marker per `name`; kind
    "coded" (the bytes coded-sgd sends) a dashed curve; kind "lossless" (raw floats coded without
    loss) a marker at the format's rounding error, or a vertical line where the error is 0 (fp32).
    Rows for several layers or steps are averaged per (name, param).
    """
    require(rd, ("name", "kind", "param", "bits_per_entry", "rel_error"), "rate-distortion")
    kinds = {"quantizer", "compressor", "coded", "lossless"}
    bad = set(rd["kind"]) - kinds
    if bad:
        raise ValueError(f"rate-distortion kind must be one of {sorted(kinds)}, got {sorted(bad)}")
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN + 1.0, 5.0))
        ax = fig.add_subplot()
        q = rd[rd["kind"] == "quantizer"].groupby(["name", "param"], sort=False)[
            ["bits_per_entry", "rel_error"]].mean()
        q = q.reset_index().sort_values(["name", "bits_per_entry"])
        for name, g in q.groupby("name", sort=False):
            model = str(name).split("+")[-1].strip().split("/")[0]  # "uniform + gennorm/ans" -> gennorm
            ax.plot(g["bits_per_entry"], g["rel_error"], "-o", ms=4, lw=1.5, color=model_color(model),
                    label=str(name))
        c = rd[rd["kind"] == "compressor"].groupby("name", sort=False)[["bits_per_entry", "rel_error"]].mean()
        markers = "s^vD<>pP*Xh"
        for i, (name, r) in enumerate(c.iterrows()):
            ax.plot([r["bits_per_entry"]], [r["rel_error"]], markers[i % len(markers)], ms=8,
                    mec="black", label=str(name))
        k = rd[rd["kind"] == "coded"].groupby(["name", "param"], sort=False)[
            ["bits_per_entry", "rel_error"]].mean().reset_index().sort_values(["name", "bits_per_entry"])
        for name, g in k.groupby("name", sort=False):
            ax.plot(g["bits_per_entry"], g["rel_error"], "--D", ms=5, lw=1.5,
                    color=method_color(str(name).split(" ")[0]), label=f"{name}: bytes sent")
        lossless = rd[rd["kind"] == "lossless"].groupby("name", sort=False)[
            ["bits_per_entry", "rel_error"]].mean()
        for name, r in lossless.iterrows():
            if r["rel_error"] > 0:
                ax.plot([r["bits_per_entry"]], [r["rel_error"]], "*", ms=12, mec="black", label=str(name))
            else:
                ax.axvline(r["bits_per_entry"], ls=":", color="0.3", label=f"{name}: error 0")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("bits per entry (log$_2$ scale)")
        ax.set_ylabel("relative error $\\|x-\\hat{x}\\|_2 / \\|x\\|_2$")
        ax.set_title("Rate-distortion on captured gradients", fontsize=11)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=True)
    return finish(fig, path)
