"""Paper figures from the DataFrames of the earlier stages, one function per figure.

Every function returns a `matplotlib.figure.Figure` (built without pyplot, so no global state)
and, when `path` is given, saves it there in the format named by the suffix (.png, .svg, .pdf).
Fitted densities come from the `gradstats` families, the one place each family's pdf/sf/ppf is
written; a fit row (`family`, `beta`, `loc`, `scale`, as in `fit_capture`'s DataFrame) names one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

FORMATS = (".png", ".svg", ".pdf")
FAMILY_ORDER = ("normal", "laplace", "gennorm", "t")
FAMILY_COLORS = {"normal": "#1f77b4", "laplace": "#2ca02c", "gennorm": "#d62728", "t": "#9467bd"}
PRETTY = {"normal": "Normal", "laplace": "Laplace", "gennorm": "GenNorm", "t": "Student-t"}
DPI = 150
BETA_COLOR_MAX = 3.0


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Readable paper style: white grid, paper context scaled up for a single-column figure."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.25):
        yield


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save `fig` to `path`; the suffix (.png, .svg or .pdf) picks the format."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise ValueError(f"figure path {p} must end in one of {FORMATS}")
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=DPI, bbox_inches="tight")
    return p


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    if df is None or len(df) == 0:
        raise ValueError(f"{what}: empty DataFrame")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: DataFrame lacks columns {missing} (has {list(df.columns)})")


def _values(x) -> np.ndarray:
    """Finite float64 view of a gradient sample (numpy array or torch tensor, any device)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("empty gradient sample")
    if not np.isfinite(a).all():
        raise ValueError(f"gradient sample has {int((~np.isfinite(a)).sum())} non-finite values")
    return a


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


def _fit_rows(fits: pd.DataFrame) -> list[pd.Series]:
    """One row per family, continuous families first, in FAMILY_ORDER."""
    _require(fits, ("family", "loc", "scale"), "fits")
    rows = [pd.Series(r._asdict()) for r in fits.drop_duplicates("family").itertuples(index=False)]
    order = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(rows, key=lambda r: (str(r["family"]).startswith("zi-"), order.get(_base(r), 99)))


def _label(row: pd.Series) -> str:
    lab = PRETTY.get(_base(row), _base(row))
    params = []
    if str(row["family"]).lower().startswith("zi-"):
        lab = f"ZI-{lab}"
        params.append(f"$\\pi$={float(row['pi']):.2f}")
    if _base(row) == "gennorm" and "beta" in row and np.isfinite(row["beta"]):
        params.append(f"$\\beta$={row['beta']:.2f}")
    return f"{lab} ({', '.join(params)})" if params else lab


def _color(row: pd.Series) -> str | None:
    return FAMILY_COLORS.get(_base(row))


def _ls(row: pd.Series) -> str:
    return "--" if str(row["family"]).lower().startswith("zi-") else "-"


def plot_density(x, fits: pd.DataFrame, title: str | None = None, bins: int = 201,
                 path: str | Path | None = None) -> Figure:
    """Histogram of one layer's gradient on a log density axis, with each fitted density overlaid.

    The log axis shows the tails, where Normal (parabola) and Laplace (straight lines) differ
    from GenNorm (-|x/s|^beta).
    """
    a = _values(x)
    rows = _fit_rows(fits)
    with _style():
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        lo, hi = np.quantile(a, [0.0, 1.0])
        if hi <= lo:
            lo, hi = lo - 1.0, hi + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        counts, _ = np.histogram(a, bins=edges)
        dens = counts / (a.size * np.diff(edges))
        ax.stairs(np.where(dens > 0, dens, np.nan), edges, fill=True, color="0.75", label="empirical")
        grid = np.linspace(lo, hi, 800)
        grid = grid[grid != 0]  # a zero-inflated pdf is the atom's mass at exactly 0
        for r in rows:
            d = family_dist(r)
            ax.plot(grid, np.asarray(d.pdf(grid), dtype=float), lw=1.8, color=_color(r), ls=_ls(r),
                    label=_label(r))
        ax.set_yscale("log")
        positive = dens[dens > 0]
        if positive.size:
            ax.set_ylim(positive.min() / 3, positive.max() * 3)
        ax.set_xlabel("gradient value")
        ax.set_ylabel("probability density (log scale)")
        if title:
            ax.set_title(title)
        ax.legend(loc="upper right", frameon=True, fontsize=9, framealpha=0.85)
    return _finish(fig, path)


def plot_tail(x, fits: pd.DataFrame, title: str | None = None, points: int = 400,
              path: str | Path | None = None) -> Figure:
    """Log survival of |x - loc|: empirical P(|X - loc| > t) against each model's 2 sf(loc + t).

    Uses each row's own loc; the families are symmetric, so P(|X - mu| > t) = 2 sf(mu + t) (for a
    zero-inflated family, t > |mu| beyond the atom).
    """
    a = _values(x)
    rows = _fit_rows(fits)
    n = a.size
    with _style():
        fig = Figure(figsize=(6.4, 4.2))
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
            ax.set_title(title)
        ax.legend(loc="lower left", frameon=True)
    return _finish(fig, path)


def plot_qq(x, fits: pd.DataFrame, title: str | None = None, path: str | Path | None = None) -> Figure:
    """QQ plot per family (one panel each): model quantiles vs empirical quantiles, with y = x.

    Points from `gradstats.goodness.qq_data` (probabilities evenly spaced in log-odds, so both
    tails are drawn as densely as the bulk).
    """
    from gradstats.goodness import qq_data

    a = _values(x)
    rows = _fit_rows(fits)
    with _style():
        ncols = min(3, len(rows))
        nrows = math.ceil(len(rows) / ncols)
        fig = Figure(figsize=(3.8 * ncols, 3.6 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(rows):]:
            fig.delaxes(ax)
        for ax, r in zip(axes, rows, strict=False):
            q = qq_data(a, family_dist(r))
            ax.plot(q["model"], q["empirical"], ".", ms=4, color=_color(r), label=_label(r))
            # axes span the data (padded): a model with far heavier tails leaves the box instead
            # of squashing the data into a vertical line
            lo, hi = float(q["empirical"].min()), float(q["empirical"].max())
            pad = 0.25 * (hi - lo) if hi > lo else 1.0
            lo, hi = lo - pad, hi + pad
            ax.plot([lo, hi], [lo, hi], "--", color="0.3", lw=1, label="y = x")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.set_title(_label(r))
            ax.set_xlabel("model quantile")
            ax.set_ylabel("empirical quantile")
        if title:
            fig.suptitle(title)
    return _finish(fig, path)


def plot_beta_heatmap(fits: pd.DataFrame, family: str = "gennorm", path: str | Path | None = None,
                      annotate: bool | None = None) -> Figure:
    """Heatmap of the fitted GenNorm shape beta over layers (rows) x training steps (columns).

    beta = 2 is Gaussian, beta = 1 Laplace; smaller is heavier-tailed. Averaged over ranks.
    `family="zi-gennorm"` shows the zero-inflated fit's beta (the shape of the non-zero entries).
    """
    _require(fits, ("family", "layer", "step", "beta"), "fits")
    if family.lower() not in ("gennorm", "zi-gennorm"):
        raise ValueError(f"beta heatmap needs family 'gennorm' or 'zi-gennorm', got {family!r}")
    g = fits[fits["family"].astype(str).str.lower() == family.lower()]
    if g.empty:
        raise ValueError(f"fits has no {family} rows to draw beta from")
    layers = list(dict.fromkeys(g["layer"]))  # model order as recorded
    table = g.pivot_table(index="layer", columns="step", values="beta", aggfunc="mean").reindex(layers)
    if annotate is None:
        annotate = table.size <= 120
    with _style():
        fig = Figure(figsize=(1.6 + 0.55 * table.shape[1] + 0.08 * max(map(len, map(str, layers))),
                              1.4 + 0.32 * table.shape[0]))
        ax = fig.add_subplot()
        label = "GenNorm" if family.lower() == "gennorm" else "ZI-GenNorm"
        # colours span beta in [0, 3] (heavy tails to near-uniform); fits at the upper bound
        # (beta -> 50, a flat layer) would otherwise wash out every other cell; annotations are exact
        vmax = float(min(np.nanmax(table.to_numpy()), BETA_COLOR_MAX))
        sns.heatmap(table, ax=ax, cmap="viridis", annot=annotate, fmt=".2f", annot_kws={"size": 7},
                    vmin=0.0, vmax=vmax, cbar_kws={"label": f"{label} shape $\\beta$", "extend": "max"})
        ax.set_xlabel("training step")
        ax.set_ylabel("layer")
        ax.set_title(f"{label} $\\beta$ per layer and step")
    return _finish(fig, path)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def plot_bits_per_layer(bits: pd.DataFrame, baseline_bits: float | None = None,
                        path: str | Path | None = None) -> Figure:
    """Achieved bits per entry per layer for each model and coder, against the empirical entropy.

    Averaged over steps and ranks; side information included (`total_bits_per_entry` when the
    frame has it). The black line is the empirical entropy of the symbols, the limit any
    model/coder pair can reach without side information.
    """
    _require(bits, ("layer", "model", "coder", "bits_per_entry", "entropy"), "bits")
    bits = bits[bits["layer"] != "TOTAL"]  # code_capture's whole-model rows
    value = "total_bits_per_entry" if "total_bits_per_entry" in bits.columns else "bits_per_entry"
    layers = list(dict.fromkeys(bits["layer"]))
    pos = {lay: i for i, lay in enumerate(layers)}
    agg = bits.groupby(["layer", "model", "coder"], sort=False)[value].mean().rename("bits_per_entry")
    agg = agg.reset_index()
    agg["x"] = agg["layer"].map(pos)
    agg["model / coder"] = agg["model"].astype(str) + " / " + agg["coder"].astype(str)
    ent = bits.groupby("layer", sort=False)["entropy"].mean().reindex(layers)
    with _style():
        fig = Figure(figsize=(min(14.0, max(6.4, 0.4 * len(layers) + 3.5)), 4.8))
        ax = fig.add_subplot()
        sns.lineplot(data=agg, x="x", y="bits_per_entry", hue="model", style="coder", markers=True,
                     dashes=False, ax=ax, lw=1.2, ms=7)
        ax.plot(np.arange(len(layers)), ent.to_numpy(), color="black", lw=2, ls="--",
                label="empirical entropy")
        if baseline_bits is not None:
            ax.axhline(baseline_bits, color="0.4", lw=1, ls=":", label=f"raw {baseline_bits:g} bits")
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels([_short(str(lay)) for lay in layers], rotation=60, ha="right", fontsize=8)
        ax.set_xlabel("layer")
        ax.set_ylabel("bits per entry")
        ax.set_title("Achieved bits per entry vs entropy")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=True)
    return _finish(fig, path)


def plot_rate_distortion(rd: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Rate-distortion: bits per entry vs relative error ||x - x_hat|| / ||x|| on the same gradients.

    Rows of kind "quantizer" are joined into one curve per `name` (a quantizer + codebook over its
    settings `param`, e.g. step sizes); rows of kind "compressor" are one marker per `name`. Rows
    for several layers or steps are averaged per (name, param).
    """
    _require(rd, ("name", "kind", "param", "bits_per_entry", "rel_error"), "rate-distortion")
    bad = set(rd["kind"]) - {"quantizer", "compressor"}
    if bad:
        raise ValueError(f"rate-distortion kind must be 'quantizer' or 'compressor', got {sorted(bad)}")
    with _style():
        fig = Figure(figsize=(7.0, 4.6))
        ax = fig.add_subplot()
        q = rd[rd["kind"] == "quantizer"].groupby(["name", "param"], sort=False)[
            ["bits_per_entry", "rel_error"]].mean()
        q = q.reset_index().sort_values(["name", "bits_per_entry"])
        for name, g in q.groupby("name", sort=False):
            ax.plot(g["bits_per_entry"], g["rel_error"], "-o", ms=4, lw=1.5, label=str(name))
        c = rd[rd["kind"] == "compressor"].groupby("name", sort=False)[["bits_per_entry", "rel_error"]].mean()
        markers = "s^vD<>pP*Xh"
        for i, (name, r) in enumerate(c.iterrows()):
            ax.plot([r["bits_per_entry"]], [r["rel_error"]], markers[i % len(markers)], ms=8,
                    mec="black", label=str(name))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("bits per entry (log$_2$ scale)")
        ax.set_ylabel("relative error $\\|x-\\hat{x}\\|_2 / \\|x\\|_2$")
        ax.set_title("Rate-distortion on captured gradients")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=True)
    return _finish(fig, path)


def _metric_label(metric_name: str) -> str:
    return {"accuracy": "test accuracy", "loss": "test loss"}.get(metric_name, metric_name)


BIT_DIRECTIONS = {"up": ("bits_up",), "down": ("bits_down",), "up+down": ("bits_up", "bits_down")}


def plot_metric_vs_bits(history: pd.DataFrame, metric_name: str = "accuracy", direction: str = "up+down",
                        path: str | Path | None = None) -> Figure:
    """Evaluated metric vs cumulative bits per worker, one line per method (log x).

    `direction` "up+down" (default) charges both links: a parameter-server method's broadcast
    (MCM's compressed model, a majority vote) costs as much as its uplink can; "up" or "down" alone.
    """
    if direction not in BIT_DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(BIT_DIRECTIONS)}, got {direction!r}")
    cols = BIT_DIRECTIONS[direction]
    _require(history, ("method", "step", "metric", *cols), "history")
    h = history.sort_values(["method", "step"], kind="stable").copy()
    h["bits_cum"] = h[list(cols)].sum(axis=1).groupby(h["method"], sort=False).cumsum()
    h = h.dropna(subset=["metric"])
    h = h[h["bits_cum"] > 0]
    with _style():
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        sns.lineplot(data=h, x="bits_cum", y="metric", hue="method", marker="o", ms=4, ax=ax)
        ax.set_xscale("log")
        ax.set_xlabel(f"cumulative bits per worker, {direction} (log scale)")
        ax.set_ylabel(_metric_label(metric_name))
        ax.set_title(f"{_metric_label(metric_name).capitalize()} vs communicated bits")
        ax.legend(title="method", fontsize=8)
    return _finish(fig, path)


def plot_metric_vs_time(history: pd.DataFrame, metric_name: str = "accuracy", network: str | None = None,
                        path: str | Path | None = None) -> Figure:
    """Evaluated metric vs estimated wall time (steps x modelled iteration time), one line per method."""
    _require(history, ("method", "time_s", "metric"), "history")
    h = history.dropna(subset=["metric"])
    with _style():
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        sns.lineplot(data=h, x="time_s", y="metric", hue="method", marker="o", ms=4, ax=ax)
        ax.set_xlabel("estimated wall time (s) = step x modelled time per step")
        ax.set_ylabel(_metric_label(metric_name))
        ax.set_title(f"{_metric_label(metric_name).capitalize()} vs simulated time"
                     + (f"\n{network}" if network else ""), fontsize=10 if network else None)
        ax.legend(title="method", fontsize=8)
    return _finish(fig, path)


def plot_iteration_time_vs_bandwidth(sweep: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Estimated iteration time vs link bandwidth (alpha-beta model), one line per method (log-log)."""
    _require(sweep, ("method", "bandwidth_gbps", "iter_overlap_s"), "bandwidth sweep")
    with _style():
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        sns.lineplot(data=sweep, x="bandwidth_gbps", y="iter_overlap_s", hue="method", marker="o", ms=5,
                     ax=ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("link bandwidth (Gbit/s, log scale)")
        ax.set_ylabel("estimated time per step (s, log scale)")
        lat = sweep["latency_us"].iloc[0] if "latency_us" in sweep else None
        ax.set_title("Iteration time vs bandwidth" + (f" (latency {lat:g} us)" if lat is not None else ""))
        ax.legend(title="method", fontsize=8)
    return _finish(fig, path)
