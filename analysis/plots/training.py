"""Figures of the compressor comparison: metric vs step / bits / time (band over seeds), time vs bandwidth.

They read `analysis.compare`'s stacked history (method, step, loss, metric, bits_up, bits_down,
time_s, and `seed` when several seeds ran) and its modelled step times. Every method has its
fixed colour (`method_color`), whatever the order of the lines. A line is the mean over seeds,
the band around it the min..max over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plots.style import FULL_WIDTH_IN, HALF_WIDTH_IN, finish, method_color, paper_style, require

BIT_DIRECTIONS = {"up": ("bits_up",), "down": ("bits_down",), "up+down": ("bits_up", "bits_down")}


def metric_label(metric_name: str) -> str:
    """Axis label of a workload's evaluated metric ("test accuracy", "test loss")."""
    return {"accuracy": "test accuracy", "loss": "test loss"}.get(metric_name, metric_name)


def _runs(h: pd.DataFrame) -> list[str]:
    return [c for c in ("method", "seed") if c in h.columns]


def _band(h: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per (method, step): mean x, and mean / min / max of y over seeds."""
    g = h.groupby(["method", "step"], sort=False)
    out = g.agg(x=(x, "mean"), y=(y, "mean"), lo=(y, "min"), hi=(y, "max")).reset_index()
    return out.sort_values(["method", "step"], kind="stable")


def _draw_bands(ax, band: pd.DataFrame, methods: list[str], marker: str | None = "o") -> None:
    for m in methods:
        g = band[band["method"] == m]
        if g.empty:
            continue
        c = method_color(m)
        ax.plot(g["x"].to_numpy(), g["y"].to_numpy(), marker=marker, ms=4, lw=1.6, color=c, label=m)
        if (g["hi"] > g["lo"]).any():
            ax.fill_between(g["x"].to_numpy(), g["lo"].to_numpy(), g["hi"].to_numpy(), color=c, alpha=0.18,
                            lw=0)


def _cumulative_bits(history: pd.DataFrame, direction: str) -> pd.DataFrame:
    if direction not in BIT_DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(BIT_DIRECTIONS)}, got {direction!r}")
    cols = BIT_DIRECTIONS[direction]
    require(history, ("method", "step", "metric", *cols), "history")
    h = history.sort_values([*_runs(history), "step"], kind="stable").copy()
    h["bits_cum"] = h[list(cols)].sum(axis=1).groupby([h[k] for k in _runs(h)], sort=False).cumsum()
    return h


def _methods(h: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(h["method"].astype(str)))


def plot_metric_vs_bits(history: pd.DataFrame, metric_name: str = "accuracy", direction: str = "up+down",
                        path: str | Path | None = None) -> Figure:
    """Evaluated metric vs cumulative bits per worker, one line per method (log x), band over seeds.

    `direction` "up+down" (default) charges both links: a parameter-server method's broadcast
    (MCM's compressed model, a majority vote) costs as much as its uplink can; "up" or "down" alone.
    """
    h = _cumulative_bits(history, direction).dropna(subset=["metric"])
    h = h[h["bits_cum"] > 0]
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 4.4))
        ax = fig.add_subplot()
        _draw_bands(ax, _band(h, "bits_cum", "metric"), _methods(h))
        ax.set_xscale("log")
        ax.set_xlabel(f"cumulative bits per worker, {direction} (log scale)")
        ax.set_ylabel(metric_label(metric_name))
        ax.set_title(f"{metric_label(metric_name).capitalize()} vs communicated bits", fontsize=11)
        ax.legend(title="method", fontsize=8)
    return finish(fig, path)


def plot_metric_vs_time(history: pd.DataFrame, metric_name: str = "accuracy", network: str | None = None,
                        path: str | Path | None = None) -> Figure:
    """Evaluated metric vs estimated wall time (steps x modelled iteration time), one line per method."""
    require(history, ("method", "time_s", "metric"), "history")
    h = history.dropna(subset=["metric"])
    if "step" not in h:
        h = h.assign(step=h["time_s"])
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 4.4))
        ax = fig.add_subplot()
        _draw_bands(ax, _band(h, "time_s", "metric"), _methods(h))
        ax.set_xlabel("estimated wall time (s) = step x modelled time per step")
        ax.set_ylabel(metric_label(metric_name))
        ax.set_title(f"{metric_label(metric_name).capitalize()} vs simulated time"
                     + (f"\n{network}" if network else ""), fontsize=10)
        ax.legend(title="method", fontsize=8)
    return finish(fig, path)


def plot_training_curves(history: pd.DataFrame, metric_name: str = "accuracy", title: str | None = None,
                         smooth: int = 5, path: str | Path | None = None) -> Figure:
    """Training loss vs step, evaluated metric vs step and vs cumulative bits (up+down), band over seeds.

    The training loss is each run's own minibatch loss, smoothed by a running mean over `smooth`
    steps before the seeds are pooled (per-step minibatch noise would hide the trend).
    """
    h = _cumulative_bits(history, "up+down")
    require(h, ("loss",), "history")
    keys = [h[k] for k in _runs(h)]
    h["loss_smooth"] = h.groupby(keys, sort=False)["loss"].transform(
        lambda s: s.rolling(max(1, smooth), min_periods=1).mean())
    methods = _methods(h)
    ev = h.dropna(subset=["metric"])
    with paper_style():
        fig = Figure(figsize=(FULL_WIDTH_IN, 4.4))
        axes = fig.subplots(1, 3)
        _draw_bands(axes[0], _band(h, "step", "loss_smooth"), methods, marker=None)
        axes[0].set_xlabel("training step")
        axes[0].set_ylabel(f"training loss (running mean of {smooth})")
        _draw_bands(axes[1], _band(ev, "step", "metric"), methods)
        axes[1].set_xlabel("training step")
        axes[1].set_ylabel(metric_label(metric_name))
        evb = ev[ev["bits_cum"] > 0]
        _draw_bands(axes[2], _band(evb, "bits_cum", "metric"), methods)
        axes[2].set_xscale("log")
        axes[2].set_xlabel("cumulative bits per worker, up+down (log)")
        axes[2].set_ylabel(metric_label(metric_name))
        n_seeds = int(h["seed"].nunique()) if "seed" in h else 1
        seeds = f"mean over {n_seeds} seeds, band min..max" if n_seeds > 1 else "one seed"
        fig.suptitle((title + ": " if title else "") + seeds, fontsize=11)
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, -0.04))
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    if path is not None:
        from analysis.plots.style import save_figure

        save_figure(fig, path)
    return fig


def plot_iteration_time_vs_bandwidth(sweep: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Estimated iteration time vs link bandwidth (alpha-beta model), one line per method (log-log).

    With a `model` column (the workload and projected model sizes, `analysis.step_time`), one panel
    per model size: a crossover is where a method's line passes under the bf16 baseline's.
    """
    require(sweep, ("method", "bandwidth_gbps", "iter_overlap_s"), "bandwidth sweep")
    models = list(dict.fromkeys(sweep["model"])) if "model" in sweep else [None]
    methods = _methods(sweep)
    with paper_style():
        width = HALF_WIDTH_IN if len(models) == 1 else FULL_WIDTH_IN
        fig = Figure(figsize=(width, 4.4))
        axes = np.atleast_1d(fig.subplots(1, len(models)))
        for ax, model in zip(axes, models, strict=True):
            s = sweep if model is None else sweep[sweep["model"] == model]
            for m in methods:
                g = s[s["method"] == m].sort_values("bandwidth_gbps")
                if len(g):
                    ax.plot(g["bandwidth_gbps"], g["iter_overlap_s"], marker="o", ms=4, lw=1.6,
                            color=method_color(m), label=m, ls="--" if m in ("bf16", "fp16") else "-")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("link bandwidth (Gbit/s, log scale)")
            if model is not None:
                ax.set_title(str(model), fontsize=10)
        axes[0].set_ylabel("modelled time per step (s, log scale)")
        lat = sweep["latency_us"].iloc[0] if "latency_us" in sweep else None
        title = "Iteration time vs bandwidth" + (f" (latency {lat:g} us)" if lat is not None else "")
        if len(models) == 1:
            axes[0].set_title(title if model is None else f"{title}\n{model}", fontsize=10)
            axes[0].legend(title="method", fontsize=8)
        else:
            fig.suptitle(title, fontsize=11)
            handles, labels = axes[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), frameon=False,
                       fontsize=9, bbox_to_anchor=(0.5, -0.04))
            fig.tight_layout(rect=(0, 0.06, 1, 1))
            if path is not None:
                from analysis.plots.style import save_figure

                save_figure(fig, path)
            return fig
    return finish(fig, path)
