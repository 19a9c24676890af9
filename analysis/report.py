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
import warnings
from pathlib import Path

import pandas as pd

from analysis.figures import (  # noqa: F401  (re-exported: where report's callers found them)
    FIGURE_FAMILIES,
    network_line,
    representative_layer,
    write_compare_figures,
    write_figures,
)
from analysis.run_dir import DATA_FILES, capture_dir, find_units, read_table, slug
from analysis.tables import (  # noqa: F401  (re-exported)
    COMPARE_COLUMNS,
    FLAG_NAME,
    NOT_REACHED,
    TAIL_COLUMNS,
    TOTAL_LAYER,
    WHOLE_MODEL,
    best_family,
    bits_table,
    bits_value_column,
    compare_table,
    fit_table,
    flag_names,
    headline,
)
from coders.wire import BF16_BITS  # noqa: F401  (re-exported)

SECTIONS = ("capture", "fits", "figures", "bits", "rate-distortion", "compare")

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
    sid = f"{kind}-{slug(unit)}" if unit else kind
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

    fits, bits, rd = (read_table(unit / f) for f in DATA_FILES)
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
        from analysis.rate_distortion import aggregate_rd

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
        summ = read_table(root / "compare.parquet")
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
