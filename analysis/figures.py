"""Draw the figures a run directory's data supports into its `figures/` folders (one PNG per figure).

Per unit: the beta heatmap, per-layer density / tail / QQ, bits per layer, rate-distortion; at the
top level: metric vs bits, metric vs simulated time and time vs bandwidth of the comparison.
The figures themselves are `analysis.plots` functions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.run_dir import DATA_FILES, capture_dir, read_table, slug

FIGURE_FAMILIES = ("normal", "laplace", "gennorm", "zi-gennorm")  # overlaid in the per-layer figures


def representative_layer(fits: pd.DataFrame) -> tuple[str, int]:
    """(layer, step) shown in the per-layer figures: the layer fitted on the most entries, last step."""
    g = fits[fits["family"].astype(str) == "gennorm"] if (fits["family"] == "gennorm").any() else fits
    n = g.groupby("layer", sort=False)["n"].max() if "n" in g else g.groupby("layer", sort=False).size()
    layer = str(n.idxmax())
    return layer, int(g[g["layer"] == layer]["step"].max())


INDEX = "index.json"  # the unit's figures, in reading order, with captions
COMPARE_INDEX = "compare_index.json"  # the comparison's figures at the top level


def layer_sizes(unit: Path, fits: pd.DataFrame | None = None, bits: pd.DataFrame | None = None) -> dict:
    """Entries per layer: the capture's shapes, else the coded / fitted sample sizes."""
    cap = capture_dir(unit)
    if cap is not None:
        from captures import open_capture

        c = open_capture(cap)
        return {la: int(np.prod(c.shapes[la])) for la in c.layers if la in c.shapes}
    for t in (bits, fits):
        if t is not None and "n" in t.columns:
            t = t[t["layer"] != "TOTAL"]
            return {str(k): int(v) for k, v in t.groupby("layer")["n"].max().items()}
    return {}


def _write_index(path: Path, entries: list[dict]) -> None:
    path.write_text(json.dumps(entries, indent=1), encoding="utf-8")


def read_index(figures_dir: Path, name: str = INDEX) -> list[dict] | None:
    """The figure entries (file, caption, width, choice) written with the figures, None if absent."""
    p = figures_dir / name
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


class _Drawer:
    """Draws figures into one folder, records their captions; a figure that cannot be drawn is skipped."""

    def __init__(self, out: Path):
        self.out = out
        self.entries: list[dict] = []
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, fn, *args, name: str, caption: str, width: str = "half", choice: str | None = None,
                 **kw) -> None:
        try:
            fig = fn(*args, path=self.out / name, **kw)
        except (ValueError, KeyError) as exc:  # report what is there even if one figure cannot be drawn
            warnings.warn(f"figure {name}: {exc}", stacklevel=2)
            return
        fig.clear()
        self.entries.append({"file": name, "caption": caption, "width": width, "choice": choice})


def _figure_steps(steps: list[int], max_steps: int) -> list[int]:
    """The last recorded step first, then evenly spaced earlier ones, `max_steps` in all."""
    steps = sorted(set(steps))
    if max_steps <= 1 or len(steps) <= 1:
        return steps[-1:]
    idx = np.unique(np.linspace(0, len(steps) - 1, min(max_steps, len(steps))).round().astype(int))
    return [steps[i] for i in idx[::-1]]


def write_figures(unit: str | Path, layers: list[str] | None = None, max_layers: int = 3,
                  max_steps: int = 2) -> list[Path]:
    """Draw every figure the data in `unit` supports into `unit/figures/` and return their paths.

    Per-layer figures (density, tail, QQ) for `layers`, default the `max_layers` largest, at up to
    `max_steps` recorded steps (the last one first); `figures/index.json` lists every figure with
    its caption and width, in reading order.
    """
    from analysis import plots

    unit = Path(unit)
    draw = _Drawer(unit / "figures")
    fits, bits, rd = (read_table(unit / f) for f in DATA_FILES)
    sizes = layer_sizes(unit, fits, bits)
    name = unit.name
    if fits is not None and len(fits):
        fams = set(fits["family"].astype(str))
        # the zero-inflated fit's beta is the shape of the non-zero entries; where a layer has no
        # exact zeros it equals the plain GenNorm beta, where it has many the plain fit degenerates
        heat = "zi-gennorm" if "zi-gennorm" in fams else "gennorm" if "gennorm" in fams else None
        if heat:
            what = "ZI-GenNorm (the shape of the non-zero entries)" if heat == "zi-gennorm" else "GenNorm"
            draw(plots.plot_beta_heatmap, fits, family=heat, sizes=sizes, name="beta_heatmap.png",
                 caption=f"{name}: fitted {what} shape β per layer (rows, entries in brackets) and "
                 "recorded training step (columns). β = 2 is Gaussian, 1 Laplace, below 1 heavier-"
                 "tailed than Laplace. Hatched cells hit the solver's bound (0.05 or 50: no shape "
                 "estimate) and are kept off the colour scale.")
        if "ks" in fits.columns:
            draw(plots.plot_fit_quality, fits, sizes=sizes, name="fit_quality.png", width="full",
                 caption=f"{name}: how well each family fits each layer (largest on top), over the recorded "
                 "steps: the Kolmogorov-Smirnov distance (left; 0 is perfect) and the mean |log10 ratio| of "
                 "the model's to the empirical tail probability at p = 1e-2, 1e-3, 1e-4 (right; 1 means 10x "
                 "off). Dot: mean over steps; bar: min..max.")
        if capture_dir(unit) is not None:
            from captures import open_capture

            cap = open_capture(capture_dir(unit))
            fitted = [la for la in dict.fromkeys(fits["layer"]) if la in cap.layers]
            chosen = layers or sorted(fitted, key=lambda la: -sizes.get(la, 0))[:max_layers]
            for layer in chosen:
                for step in _figure_steps(list(fits[fits["layer"] == layer]["step"]), max_steps):
                    sel = fits[(fits["layer"] == layer) & (fits["step"] == step)
                               & fits["family"].astype(str).isin(FIGURE_FAMILIES)]
                    if "rank" in sel:
                        sel = sel[sel["rank"] == sel["rank"].min()]
                    if sel.empty:
                        continue
                    x = cap.get(layer, step)
                    title = f"{name}: {layer}, step {step}"
                    s = f"{slug(layer)}_step{step}"
                    choice = f"{layer} ({sizes.get(layer, x.size):,} entries), step {step}"
                    draw(plots.plot_density, x, sel, name=f"density_{s}.png", title=title, choice=choice,
                         caption=f"Histogram of the {x.size:,} recorded gradient entries of {layer} at step "
                         f"{step} (grey, log density) with each fitted family. Dashed: zero-inflated fits; "
                         "their atom P(X = 0) = π is the dotted stem at 0, drawn as π / bin width so "
                         "it reads against the histogram bar holding 0.")
                    draw(plots.plot_tail, x, sel, name=f"tail_{s}.png", title=title, choice=choice,
                         caption=f"Tail of {layer} at step {step}: the empirical P(|X - loc| > t) (dots) "
                         "against each fit's (lines), log scale. A line below the dots predicts too few "
                         "large entries: what a codebook's escape symbols or a clipping threshold pay for.")
                    draw(plots.plot_qq, x, sel, name=f"qq_{s}.png", title=title, choice=choice, width="full",
                         caption=f"QQ plots of {layer} at step {step}, one panel per family, each with its "
                         "own axes: model quantiles (x) against empirical ones (y), probabilities spaced "
                         "evenly in log-odds so both tails are as densely drawn as the bulk. On y = x the "
                         "family fits; an S bending away at the ends means the data's tails are heavier.")
    if bits is not None and len(bits):
        quant = ", ".join(sorted(set(bits["quantizer"].dropna().astype(str)))) if "quantizer" in bits else ""
        q = f" (quantizer {quant})" if quant else ""
        draw(plots.plot_bits_per_layer, bits, sizes=sizes, name="bits_per_layer.png", width="full",
             caption=f"{name}: achieved bits per entry per layer (largest on top){q}, side information "
             "included, for each probability model (colour) and entropy coder (marker), against the "
             "empirical entropy of the symbols (black bar). Averaged over steps.")
        draw(plots.plot_bits_vs_entropy, bits, sizes=sizes, name="bits_vs_entropy.png",
             caption=f"{name}: achieved bits against the entropy, one point per layer and model / coder; "
             "marker area ~ entries, so the big points decide the whole-model total. Height above the "
             "dashed y = x is what the pair loses on that layer.")
        draw(plots.plot_gap_breakdown, bits, sizes=sizes, name="gap_breakdown.png",
             caption=f"{name}: whole-model bits per entry of each model / coder, split into the entropy "
             "(floor), model mismatch (cross-entropy - entropy), coder overhead (payload - cross-entropy) "
             "and side information (model parameters or histogram, quantizer scales).")
        if "step" in bits.columns and bits["step"].nunique() > 1:
            draw(plots.plot_bits_over_steps, bits, sizes=sizes, name="bits_over_steps.png",
                 caption=f"{name}: whole-model bits per entry at each recorded training step: whether a "
                 "model's rate holds as the gradients change during training.")
    if rd is not None and len(rd):
        from analysis.rate_distortion import aggregate_rd

        draw(plots.plot_rate_distortion, aggregate_rd(rd), name="rate_distortion.png",
             caption=f"{name}: rate-distortion on the same captured gradients, pooled over layers: bits per "
             "entry (x, log2) against relative error ||x - x̂|| / ||x|| (y, log). Curves: a uniform "
             "quantizer over step sizes coded under each model; markers: the compressors at typical "
             "settings (exact wire bits). Down and left is better.")
    _write_index(draw.out / INDEX, draw.entries)
    return [draw.out / e["file"] for e in draw.entries]


def write_compare_figures(run_dir: str | Path) -> list[Path]:
    """The comparison's figures per workload from `compare_history.parquet` into `run_dir/figures/`.

    Training loss, metric vs step and vs bits (band over seeds), metric vs modelled time, and
    modelled step time vs bandwidth for the workload and each projected model size
    (`step_time.parquet`, else a sweep of the summary). Listed in `figures/compare_index.json`.
    """
    from analysis import plots
    from analysis.compare import bandwidth_sweep

    root = Path(run_dir)
    hist, summ = read_table(root / "compare_history.parquet"), read_table(root / "compare.parquet")
    if hist is None or summ is None:
        return []
    times = read_table(root / "step_time.parquet")
    net = network_line(root)
    draw = _Drawer(root / "figures")
    workloads = list(dict.fromkeys(summ["workload"])) if "workload" in summ else [None]
    for wl in workloads:
        s = summ if wl is None else summ[summ["workload"] == wl]
        h = hist if wl is None or "workload" not in hist else hist[hist["workload"] == wl]
        metric = str(s["metric_name"].iloc[0]) if "metric_name" in s else "accuracy"
        sfx = "" if len(workloads) == 1 else f"_{slug(wl)}"
        label = wl or "the workload"
        n_seeds = int(s["seeds"].max()) if "seeds" in s else 1
        band = f"mean over {n_seeds} seeds, band min..max" if n_seeds > 1 else "one seed"
        draw(plots.plot_training_curves, h, metric_name=metric, title=wl, name=f"training{sfx}.png",
             width="full", choice=None,
             caption=f"{label}: training loss (running mean), held-out {metric} against the step and against "
             f"the cumulative bits each worker sent and received; {band}. Methods keep their colour in "
             "every figure.")
        draw(plots.plot_metric_vs_time, h, metric_name=metric, network=net, name=f"metric_vs_time{sfx}.png",
             caption=f"{label}: held-out {metric} against modelled wall time (step x modelled time per step "
             f"at {net or 'the stated network'}, codec time measured in isolation).")
        if times is not None and len(times):
            sweep = times if wl is None or "workload" not in times else times[times["workload"] == wl]
        else:
            sweep = bandwidth_sweep(s)
        many = "model" in sweep and sweep["model"].nunique() > 1
        draw(plots.plot_iteration_time_vs_bandwidth, sweep, name=f"time_vs_bandwidth{sfx}.png",
             width="full" if many else "half",
             caption=f"{label}: modelled time per step against link bandwidth (alpha-beta model), "
             + ("for the workload and projected model sizes (bits and codec time per entry from the largest "
                "measured layer, compute scaled with the parameter count); " if many else "")
             + "a method pays off where its line passes under the dashed bf16 baseline.")
    _write_index(draw.out / COMPARE_INDEX, draw.entries)
    return [draw.out / e["file"] for e in draw.entries]


def network_line(root: Path) -> str | None:
    """"<B> Gbit/s, <alpha> us latency" from `root/network.json`, None when absent."""
    p = root / "network.json"
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return f"{d['bandwidth_gbps']:g} Gbit/s, {d['latency_us']:g} us latency"
