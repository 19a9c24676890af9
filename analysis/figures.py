"""Draw the figures a run directory's data supports into its `figures/` folders (one PNG per figure).

Per unit: the beta heatmap, per-layer density / tail / QQ, bits per layer, rate-distortion; at the
top level: metric vs bits, metric vs simulated time and time vs bandwidth of the comparison.
The figures themselves are `analysis.plots` functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.run_dir import DATA_FILES, capture_dir, read_table, slug

FIGURE_FAMILIES = ("normal", "laplace", "gennorm", "zi-gennorm")  # overlaid in the per-layer figures


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
    fits, bits, rd = (read_table(unit / f) for f in DATA_FILES)

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
                s = slug(layer)
                _draw(plots.plot_density, x, sel, name=f"density_{s}.png", title=title)
                _draw(plots.plot_tail, x, sel, name=f"tail_{s}.png", title=title)
                _draw(plots.plot_qq, x, sel, name=f"qq_{s}.png", title=title)
    if bits is not None and len(bits):
        _draw(plots.plot_bits_per_layer, bits, name="bits_per_layer.png")
    if rd is not None and len(rd):
        from analysis.rate_distortion import aggregate_rd

        _draw(plots.plot_rate_distortion, aggregate_rd(rd), name="rate_distortion.png")
    return made


def write_compare_figures(run_dir: str | Path) -> list[Path]:
    """Accuracy vs bits and vs simulated time from `compare_history.parquet` into `run_dir/figures/`."""
    from analysis import plots

    root = Path(run_dir)
    hist, summ = read_table(root / "compare_history.parquet"), read_table(root / "compare.parquet")
    if hist is None or summ is None:
        return []
    metric = str(summ["metric_name"].iloc[0]) if "metric_name" in summ else "accuracy"
    net = network_line(root)
    from analysis.compare import bandwidth_sweep

    out = root / "figures"
    paths = [out / "metric_vs_bits.png", out / "metric_vs_time.png", out / "time_vs_bandwidth.png"]
    plots.plot_metric_vs_bits(hist, metric_name=metric, path=paths[0]).clear()
    plots.plot_metric_vs_time(hist, metric_name=metric, network=net, path=paths[1]).clear()
    plots.plot_iteration_time_vs_bandwidth(bandwidth_sweep(summ), path=paths[2]).clear()
    return paths


def network_line(root: Path) -> str | None:
    """"<B> Gbit/s, <alpha> us latency" from `root/network.json`, None when absent."""
    p = root / "network.json"
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return f"{d['bandwidth_gbps']:g} Gbit/s, {d['latency_us']:g} us latency"
