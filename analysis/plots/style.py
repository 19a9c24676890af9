"""What every figure shares: the paper style, saving, input checks and the fixed colour of each name.

Colours are keyed by name, never by position in a legend, so a method (or a probability model,
or a family) has the same colour in every figure of a report: `method_color("powersgd")` is the
same whether PowerSGD is the second line of one figure or the fifth of another. Names without an
entry get a colour from a hash of the name (stable across runs and figures).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FORMATS = (".png", ".svg", ".pdf")
DPI = 150
FULL_WIDTH_IN = 13.0  # a figure drawn for the full width of the report's column
HALF_WIDTH_IN = 6.4

# Tableau-20 and a few more, in an order where neighbours differ; the hash fallback draws from it
_POOL = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
         "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")

METHOD_COLORS = {
    # the 16-bit baseline is black in every figure
    "bf16": "#000000", "fp16": "#555555", "fp32": "#999999", "sgd": "#999999",
    "powersgd": "#1f77b4", "powergossip": "#17becf",
    "signsgd-mv": "#ff9896", "signum-mv": "#d62728", "ef-signsgd": "#e377c2", "s3gd-mv": "#ff7f0e",
    "mcm": "#2ca02c", "rand-mcm": "#98df8a",
    "topk": "#9467bd", "topk-ef": "#c5b0d5", "randk": "#8c564b", "randk-ef": "#c49c94",
    "qsgd": "#bcbd22", "qsgd-ef": "#dbdb8d", "coded-sgd": "#393b79",
    "dpsgd": "#637939", "choco-topk": "#7b4173", "choco-randk": "#a55194", "choco-sign": "#ce6dbd",
    "choco-lowrank": "#de9ed6", "deepsqueeze": "#8c6d31",
}

# probability models of `coders` (and the families of `gradstats`, which share the names)
MODEL_COLORS = {
    "histogram": "#000000", "normal": "#1f77b4", "laplace": "#2ca02c", "gennorm": "#d62728",
    "t": "#9467bd", "studentt": "#9467bd", "zi-normal": "#aec7e8", "zi-laplace": "#98df8a",
    "zi-gennorm": "#ff7f0e", "zi-t": "#c5b0d5", "best": "#8c564b", "raw-bf16": "#7f7f7f",
}
CODER_MARKERS = {"ans": "o", "range": "s", "huffman": "^", "zstd": "D"}


def _hashed(name: str) -> str:
    digest = hashlib.md5(str(name).encode()).digest()
    return _POOL[digest[0] % len(_POOL)]


def method_color(name: str) -> str:
    """The colour of a compression method in every figure (fixed table, else a hash of the name)."""
    return METHOD_COLORS.get(str(name), _hashed(name))


def model_color(name: str) -> str:
    """The colour of a probability model or distribution family in every figure."""
    return MODEL_COLORS.get(str(name).lower(), _hashed(name))


def coder_marker(name: str) -> str:
    """The marker of an entropy coder (models are colours, coders are marker shapes)."""
    return CODER_MARKERS.get(str(name).lower(), "P")


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
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


def finish(fig: Figure, path: str | Path | None) -> Figure:
    """Lay out `fig` and save it when `path` is given.

    One-axes figures skip tight_layout: saving with bbox_inches="tight" already fits the margins
    to the labels and legends, and the layout pass costs as much as drawing the figure.
    """
    if len(fig.axes) > 1:
        fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Raise ValueError when `df` is empty or lacks one of `columns`."""
    if df is None or len(df) == 0:
        raise ValueError(f"{what}: empty DataFrame")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: DataFrame lacks columns {missing} (has {list(df.columns)})")


def sample_values(x) -> np.ndarray:
    """Finite float64 view of a gradient sample (numpy array or torch tensor, any device)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("empty gradient sample")
    if not np.isfinite(a).all():
        raise ValueError(f"gradient sample has {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def short_name(name: str, width: int = 64) -> str:
    """`name` cut from the left to `width` characters (the end of a layer name is the telling part).

    Layer axes are horizontal (names on the left, in full up to `width`), so only names longer
    than any real model's parameter path are cut.
    """
    name = str(name)
    return name if len(name) <= width else "..." + name[-(width - 3):]


def legend_below(ax, ncol: int = 3, **kw) -> None:
    """A legend under the axes, below the tick labels and the x label, out of the data's way."""
    from matplotlib.transforms import offset_copy

    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # anchored a fixed distance in points under the axes: clears the tick labels and the x label
        # whatever the figure's height
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-kw.pop("gap_points", 44), units="points")
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                  ncol=ncol, frameon=False, fontsize=kw.pop("fontsize", 9), **kw)
