"""Paper figures from the DataFrames of the earlier stages, one function per figure.

Every function returns a `matplotlib.figure.Figure` (built without pyplot, so no global state)
and, when `path` is given, saves it there in the format named by the suffix (.png, .svg, .pdf).
Colours are keyed by name (`method_color`, `model_color`), so a method or a probability model has
one colour in every figure. Modules by stage: `distributions` (fits), `coding` (bits),
`training` (the compressor comparison); `style` holds what they share.
"""

from analysis.plots.coding import (
    gap_parts,
    plot_bits_over_steps,
    plot_bits_per_layer,
    plot_bits_vs_entropy,
    plot_gap_breakdown,
    plot_rate_distortion,
    whole_model_bits,
)
from analysis.plots.distributions import (
    BETA_COLOR_MAX,
    FAMILY_ORDER,
    PRETTY,
    family_dist,
    plot_beta_heatmap,
    plot_density,
    plot_fit_quality,
    plot_qq,
    plot_tail,
)
from analysis.plots.style import (
    DPI,
    FORMATS,
    METHOD_COLORS,
    MODEL_COLORS,
    method_color,
    model_color,
    save_figure,
)
from analysis.plots.training import (
    BIT_DIRECTIONS,
    metric_label,
    plot_iteration_time_vs_bandwidth,
    plot_metric_vs_bits,
    plot_metric_vs_time,
    plot_training_curves,
)

__all__ = [
    "BETA_COLOR_MAX", "BIT_DIRECTIONS", "DPI", "FAMILY_ORDER", "FORMATS", "METHOD_COLORS", "MODEL_COLORS",
    "PRETTY", "family_dist", "gap_parts", "method_color", "metric_label", "model_color",
    "plot_beta_heatmap", "plot_bits_over_steps", "plot_bits_per_layer", "plot_bits_vs_entropy",
    "plot_density", "plot_fit_quality", "plot_gap_breakdown", "plot_iteration_time_vs_bandwidth",
    "plot_metric_vs_bits", "plot_metric_vs_time", "plot_qq", "plot_rate_distortion", "plot_tail",
    "plot_training_curves", "save_figure", "whole_model_bits",
]
