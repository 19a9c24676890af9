"""Figures of the fitted distributions: density, tail, QQ, GenNorm beta over layers x steps, fit quality.

Fitted densities come from the `gradstats` families, the one place each family's pdf/sf/ppf is
written; a fit row (`family`, `beta`, `loc`, `scale`, `pi`, as in `fit_capture`'s DataFrame) names one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.plots.style import (
    FULL_WIDTH_IN,
    HALF_WIDTH_IN,
    finish,
    legend_below,
    model_color,
    paper_style,
    require,
    sample_values,
    short_name,
)

FAMILY_ORDER = ("normal", "laplace", "gennorm", "t")
PRETTY = {"normal": "Normal", "laplace": "Laplace", "gennorm": "GenNorm", "t": "Student-t"}
BETA_COLOR_MAX = 3.0
TAIL_COLUMNS = ("tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04")


def family_dist(row: pd.Series | dict):
    """The frozen `gradstats` family named by one fit row (family + its parameter columns).

    `zi-<name>` rows give `ZeroInflated(<name>, pi)`: a point mass pi at exactly 0 plus
    (1 - pi) times the continuous family.
    """
    from gradstats import families as fam

    row = dict(row)
    name = fam.family_name(row["family"])
    base = fam.FAMILIES[name.removeprefix("zi-")]
    try:
        params = {p: float(row[p]) for p in base.param_names}
        pi = float(row["pi"]) if name.startswith("zi-") else 0.0
    except KeyError as exc:
        raise ValueError(f"fit row for {name} lacks parameter column {exc}") from exc
    bad = {k: v for k, v in params.items() if not math.isfinite(v)}
    if bad:
        raise ValueError(f"fit row for {name} has non-finite parameters {bad} (a degenerate fit?)")
    dist = base(**params)
    return fam.ZeroInflated(dist, pi=pi) if name.startswith("zi-") else dist


def _base(row: pd.Series) -> str:
    return str(row["family"]).lower().removeprefix("zi-")


def _is_zi(row: pd.Series) -> bool:
    return str(row["family"]).lower().startswith("zi-")


def _fit_rows(fits: pd.DataFrame) -> list[pd.Series]:
    """One row per family, continuous families first, in FAMILY_ORDER."""
    require(fits, ("family", "loc", "scale"), "fits")
    rows = [pd.Series(r._asdict()) for r in fits.drop_duplicates("family").itertuples(index=False)]
    order = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(rows, key=lambda r: (_is_zi(r), order.get(_base(r), 99)))


def _label(row: pd.Series) -> str:
    lab = PRETTY.get(_base(row), _base(row))
    params = []
    if _is_zi(row):
        lab = f"ZI-{lab}"
        params.append(f"$\\pi$={float(row['pi']):.2f}")
    if _base(row) == "gennorm" and "beta" in row and np.isfinite(row["beta"]):
        params.append(f"$\\beta$={row['beta']:.2f}")
    return f"{lab} ({', '.join(params)})" if params else lab


def _color(row: pd.Series) -> str:
    return model_color(str(row["family"]))


def _ls(row: pd.Series) -> str:
    return "--" if _is_zi(row) else "-"


def plot_density(x, fits: pd.DataFrame, title: str | None = None, bins: int = 201,
                 path: str | Path | None = None) -> Figure:
    """Histogram of one layer's gradient on a log density axis, with each fitted density overlaid.

    The log axis shows the tails, where Normal (parabola) and Laplace (straight lines) differ
    from GenNorm (-|x/s|^beta). A zero-inflated fit's atom P(X = 0) = pi is drawn as a stem at 0
    of height pi / (bin width): the density the atom puts into the histogram bin holding 0, so
    it reads against that bar.
    """
    a = sample_values(x)
    rows = _fit_rows(fits)
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 4.6))
        ax = fig.add_subplot()
        lo, hi = np.quantile(a, [0.0, 1.0])
        if hi <= lo:
            lo, hi = lo - 1.0, hi + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        counts, _ = np.histogram(a, bins=edges)
        width = float(edges[1] - edges[0])
        dens = counts / (a.size * np.diff(edges))
        ax.stairs(np.where(dens > 0, dens, np.nan), edges, fill=True, color="0.78", label="empirical")
        grid = np.linspace(lo, hi, 800)
        grid = grid[grid != 0]  # a zero-inflated pdf is the atom's mass at exactly 0
        for r in rows:
            d = family_dist(r)
            ax.plot(grid, np.asarray(d.pdf(grid), dtype=float), lw=1.8, color=_color(r), ls=_ls(r),
                    label=_label(r))
        positive = dens[dens > 0]
        ymin = positive.min() / 3 if positive.size else 1e-3
        top = positive.max() * 3 if positive.size else 1.0
        for r in rows:
            pi = float(r.get("pi", 0.0)) if _is_zi(r) else 0.0
            if pi > 0 and np.isfinite(pi):
                h = pi / width
                ax.plot([0.0, 0.0], [ymin, h], color=_color(r), lw=2.2, ls=":", marker="^", markevery=[1],
                        ms=8, label=f"{_label(r).split(' (')[0]} atom at 0: $\\pi$ / bin width")
                top = max(top, 3 * h)
        ax.set_yscale("log")
        ax.set_ylim(ymin, top)
        ax.set_xlabel("gradient value")
        ax.set_ylabel("probability density (log scale)")
        if title:
            ax.set_title(title, fontsize=10)
        legend_below(ax, ncol=2, fontsize=8)
    return finish(fig, path)


def plot_tail(x, fits: pd.DataFrame, title: str | None = None, points: int = 400,
              path: str | Path | None = None) -> Figure:
    """Log survival of |x - loc|: empirical P(|X - loc| > t) against each model's 2 sf(loc + t).

    Uses each row's own loc; the families are symmetric, so P(|X - mu| > t) = 2 sf(mu + t) (for a
    zero-inflated family, t > |mu| beyond the atom).
    """
    a = sample_values(x)
    rows = _fit_rows(fits)
    n = a.size
    with paper_style():
        fig = Figure(figsize=(HALF_WIDTH_IN, 4.6))
        ax = fig.add_subplot()
        loc0 = float(rows[0]["loc"])
        t = np.sort(np.abs(a - loc0))
        # empirical survival k/n at the order statistic with k points above it, k on a log grid
        # so the tail is as densely drawn as the body
        k = np.unique(np.geomspace(1, max(n - 1, 1), min(points, n)).astype(np.int64))
        ax.plot(t[n - 1 - k], k / n, "o", ms=3, color="0.2", label="empirical")
        grid = np.linspace(0, t[-1], 400)
        for r in rows:
            d = family_dist(r)
            mu = float(r["loc"])
            ax.plot(grid, 2 * np.asarray(d.sf(mu + grid), dtype=float), lw=1.8, color=_color(r), ls=_ls(r),
                    label=_label(r))
        ax.set_yscale("log")
        ax.set_ylim(max(0.3 / n, 1e-12), 1.5)
        ax.set_xlabel("threshold t = |gradient - loc|")
        ax.set_ylabel("P(|X - loc| > t) (log scale)")
        if title:
            ax.set_title(title, fontsize=10)
        legend_below(ax, ncol=2, fontsize=8)
    return finish(fig, path)


def plot_qq(x, fits: pd.DataFrame, title: str | None = None, path: str | Path | None = None) -> Figure:
    """QQ plot per family (one panel each, each with its own axes): model vs empirical quantiles, y = x.

    Points from `gradstats.goodness.qq_data` (probabilities evenly spaced in log-odds, so both
    tails are drawn as densely as the bulk). Each panel spans its own points, model and empirical,
    so a model with far heavier tails shows how far instead of being clipped.
    """
    from gradstats.goodness import qq_data

    a = sample_values(x)
    rows = _fit_rows(fits)
    with paper_style():
        ncols = min(4, len(rows))
        nrows = math.ceil(len(rows) / ncols)
        fig = Figure(figsize=(min(FULL_WIDTH_IN, 3.4 * ncols + 0.6), 3.5 * nrows + 0.4))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(rows):]:
            fig.delaxes(ax)
        for ax, r in zip(axes, rows, strict=False):
            q = qq_data(a, family_dist(r))
            model, emp = np.asarray(q["model"], dtype=float), np.asarray(q["empirical"], dtype=float)
            ax.plot(model, emp, ".", ms=4, color=_color(r), label=_label(r))
            both = np.concatenate([model[np.isfinite(model)], emp])
            lo, hi = float(both.min()), float(both.max())
            pad = 0.05 * (hi - lo) if hi > lo else 1.0
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.3", lw=1, label="y = x")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.ticklabel_format(style="sci", scilimits=(-2, 3))
            ax.set_title(_label(r), fontsize=10)
            ax.set_xlabel("model quantile")
            ax.set_ylabel("empirical quantile")
        if title:
            fig.suptitle(title, fontsize=11)
    return finish(fig, path)


def _bounds() -> tuple[float, float]:
    from gradstats.fitting import BETA_BOUNDS

    return float(BETA_BOUNDS[0]), float(BETA_BOUNDS[1])


def plot_beta_heatmap(fits: pd.DataFrame, family: str = "gennorm", path: str | Path | None = None,
                      annotate: bool | None = None, sizes: dict[str, int] | None = None) -> Figure:
    """Heatmap of the fitted GenNorm shape beta over layers (rows) x training steps (columns).

    beta = 2 is Gaussian, beta = 1 Laplace; smaller is heavier-tailed. Averaged over ranks.
    `family="zi-gennorm"` shows the zero-inflated fit's beta (the shape of the non-zero entries).
    Fits at the solver's bound (`gradstats.fitting.BETA_BOUNDS`) are not shape estimates: their
    cells are hatched grey, labelled "bound", and kept off the colour scale. `sizes` (entries per
    layer) are appended to the row labels.
    """
    require(fits, ("family", "layer", "step", "beta"), "fits")
    if family.lower() not in ("gennorm", "zi-gennorm"):
        raise ValueError(f"beta heatmap needs family 'gennorm' or 'zi-gennorm', got {family!r}")
    g = fits[fits["family"].astype(str).str.lower() == family.lower()]
    if g.empty:
        raise ValueError(f"fits has no {family} rows to draw beta from")
    layers = list(dict.fromkeys(g["layer"]))  # model order as recorded
    table = g.pivot_table(index="layer", columns="step", values="beta", aggfunc="mean").reindex(layers)
    lo, hi = _bounds()
    vals = table.to_numpy(dtype=float)
    at_bound = (vals <= lo * (1 + 1e-6)) | (vals >= hi * (1 - 1e-6))
    if annotate is None:
        annotate = table.size <= 120
    labels = [f"{short_name(la)} ({sizes[la]:,})" if sizes and la in sizes else str(la) for la in layers]
    with paper_style():
        fig = Figure(figsize=(min(FULL_WIDTH_IN, 3.2 + 0.7 * table.shape[1]
                                  + 0.085 * max(map(len, labels))), 1.6 + 0.34 * table.shape[0]))
        ax = fig.add_subplot()
        label = "GenNorm" if family.lower() == "gennorm" else "ZI-GenNorm"
        free = vals[~at_bound & np.isfinite(vals)]
        vmax = float(min(free.max(), BETA_COLOR_MAX)) if free.size else BETA_COLOR_MAX
        shown = pd.DataFrame(vals, index=labels, columns=table.columns)
        sns.heatmap(shown, ax=ax, cmap="viridis", annot=annotate, fmt=".2f", annot_kws={"size": 8},
                    vmin=0.0, vmax=vmax, mask=at_bound, linewidths=0.5, linecolor="white",
                    cbar_kws={"label": f"{label} shape $\\beta$", "extend": "max"})
        for i, j in zip(*np.nonzero(at_bound), strict=True):
            ax.add_patch(matplotlib_rect(j, i))
            if annotate:
                ax.text(j + 0.5, i + 0.5, f"{vals[i, j]:g}\nbound", ha="center", va="center", fontsize=7,
                        color="0.15")
        ax.set_xlabel("training step")
        ax.set_ylabel("layer")
        ax.set_title(f"{label} $\\beta$ per layer and step" + (" (hatched: fit at a bound)"
                                                              if at_bound.any() else ""), fontsize=11)
    return finish(fig, path)


def matplotlib_rect(col: int, row: int):
    """A hatched grey cell of a heatmap (a fit at its bound, off the colour scale)."""
    from matplotlib.patches import Rectangle

    return Rectangle((col, row), 1, 1, facecolor="0.88", edgecolor="0.55", hatch="///", lw=0.0)


def plot_fit_quality(fits: pd.DataFrame, sizes: dict[str, int] | None = None,
                     path: str | Path | None = None) -> Figure:
    """Fit quality per layer and family: KS distance and mean |tail error|, over the recorded steps.

    Left: the Kolmogorov-Smirnov distance sup|F_n - F| (0 is a perfect fit); right: the mean over
    the resolved p in {1e-2, 1e-3, 1e-4} of |log10(model / empirical P(|X - loc| > t_p))| (1 means
    the model is off by 10x in the tail). A dot is the mean over steps, its bar the min..max.
    Layers (rows) are ordered by size, largest on top.
    """
    require(fits, ("family", "layer", "step", "ks"), "fits")
    f = fits.copy()
    tails = [c for c in TAIL_COLUMNS if c in f.columns]
    vals = np.abs(f[tails].to_numpy(dtype=float)) if tails else np.full((len(f), 1), np.nan)
    # a row whose sample resolves no tail probability has no tail error (NaN), not a warning
    f["tail"] = np.divide(np.nansum(vals, axis=1), np.isfinite(vals).sum(axis=1),
                          out=np.full(len(f), np.nan), where=np.isfinite(vals).any(axis=1))
    layers = list(dict.fromkeys(f["layer"]))
    if sizes:
        layers.sort(key=lambda la: -sizes.get(la, 0))
    fams = list(dict.fromkeys(f["family"].astype(str)))
    pos = {la: i for i, la in enumerate(layers)}
    with paper_style():
        fig = Figure(figsize=(FULL_WIDTH_IN, 1.8 + 0.36 * len(layers)))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, col, xlabel in ((axes[0], "ks", "KS distance (log scale)"),
                                (axes[1], "tail", "mean |tail error| (log10 ratio)")):
            for k, fam in enumerate(fams):
                g = f[f["family"].astype(str) == fam].groupby("layer")[col].agg(["mean", "min", "max"])
                g = g.reindex(layers).dropna()
                if g.empty:
                    continue
                dodge = (k - (len(fams) - 1) / 2) * 0.8 / max(len(fams), 1)
                y = np.array([pos[la] for la in g.index]) + dodge
                ax.errorbar(g["mean"], y, xerr=[g["mean"] - g["min"], g["max"] - g["mean"]], fmt="o", ms=5,
                            lw=1, capsize=2, color=model_color(fam), label=fam)
            ax.set_xlabel(xlabel)
            if col == "ks":
                ax.set_xscale("log")
        labels = [f"{short_name(la)} ({sizes[la]:,})" if sizes and la in sizes else short_name(la)
                  for la in layers]
        axes[0].set_yticks(np.arange(len(layers)))
        axes[0].set_yticklabels(labels, fontsize=8)
        axes[0].set_ylim(len(layers) - 0.5, -0.5)
        axes[0].set_ylabel("layer (entries)")
        fig.suptitle("Fit quality per layer and family over the recorded steps", fontsize=11)
        legend_below(axes[0], ncol=min(6, len(fams)), fontsize=8)
    return finish(fig, path)
