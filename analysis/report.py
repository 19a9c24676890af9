"""Self-contained HTML report of a run directory (stage 5).

`write_report(run_dir)` reads what is present (ARCHITECTURE.md, "Run directory layout"):
`capture/` (or the directory is itself a capture), `fits.parquet`, `bits.parquet`, `rd.parquet`,
`compare.parquet` (+ `compare_history`, `compare_seeds`, `codec`, `step_time` parquet files),
`provenance.json`, `figures/`, either in `run_dir` itself or in one sub-directory per workload
(what `gradstats demo` writes), and renders one HTML page with every image embedded as base64,
so the file can be mailed or archived alone. Reading order: the headline (what the run found),
provenance (how it was obtained), then per workload the capture, fits, figures, bits and
rate-distortion, then the compressor comparison. Only sections with data are linked; tables
scroll inside their own box with the first column fixed, so the page never scrolls sideways.
Tables iterate over the columns they are given: new models, coders or methods appear as rows or
columns without a change here.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from pathlib import Path

import pandas as pd

from analysis import provenance as prov
from analysis.figures import (  # noqa: F401  (re-exported: where report's callers found them)
    COMPARE_INDEX,
    FIGURE_FAMILIES,
    INDEX,
    network_line,
    read_index,
    representative_layer,
    write_compare_figures,
    write_figures,
)
from analysis.headline import compare_headline, crossover, unit_headline  # noqa: F401
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
    codec_size_table,
    compare_display,
    compare_table,
    fit_table,
    flag_names,
    fmt_seconds,
    fmt_sig,
    headline,
    headline_bits,
    rd_tables,
    run_details,
    speedup_table,
    winner,
)
from captures.progress import Progress, open_bar
from coders.wire import BF16_BITS

SECTIONS = ("summary", "provenance", "capture", "fits", "figures", "bits", "rate-distortion", "compare",
            "inputs")

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 1.2em auto;
       max-width: 1320px; padding: 0 16px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; margin-bottom: 0.3em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 1.8em; }
h3 { margin-top: 1.4em; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.6em 0 1em; border: 1px solid #ddd; }
.scroll table { border-collapse: separate; border-spacing: 0; font-size: 0.85em; }
th, td { border-bottom: 1px solid #e3e3e3; border-right: 1px solid #eee; padding: 3px 8px; text-align: right;
         white-space: nowrap; }
thead th { background: #f0f0f0; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; z-index: 1;
                                 border-right: 2px solid #bbb; }
thead th:first-child { background: #f0f0f0; z-index: 2; }
tbody tr:hover td { background: #f7faff; }
figure { margin: 0.6em 0; vertical-align: top; box-sizing: border-box; }
figure.half { display: inline-block; width: calc(50% - 0.8em); margin-right: 0.6em; }
figure.full { display: block; width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; display: block; }
figcaption { font-size: 0.88em; color: #444; margin-top: 0.3em; }
.note { color: #666; font-style: italic; }
.headline { background: #f4f8f4; border-left: 4px solid #3a7; padding: 0.6em 1.2em; margin: 0.8em 0; }
.headline li { margin: 0.25em 0; }
.prov td:first-child { font-weight: bold; }
.prov td { white-space: normal; text-align: left; }
nav { font-size: 0.92em; margin: 0.4em 0 1em; } nav a { margin-right: 0.9em; } nav div { margin: 0.15em 0; }
.chooser { margin: 0.4em 0; } .chooser select { font-size: 1em; }
"""

CHOOSE_JS = (
    "var v=this.value,p=this.closest('.figset');"
    "p.querySelectorAll('.choice').forEach(function(d){d.style.display=d.dataset.choice===v?'':'none'})"
)


def _table(df: pd.DataFrame, digits: int = 3, cls: str = "data") -> str:
    """`df` as an HTML table in its own horizontal scroll box, numbers to `digits` significant digits."""
    body = df.to_html(
        index=False, border=0, na_rep="", float_format=lambda v: fmt_sig(v, digits), classes=cls, escape=True
    )
    return f'<div class="scroll">{body}</div>'


def _img(path: Path, caption: str | None = None, width: str = "half") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = caption if caption is not None else path.stem.replace("_", " ")
    width = width if width in ("half", "full") else "half"
    return (
        f'<figure class="{width}"><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
    )


def _figures(
    folder: Path, index_name: str, entries: list[dict] | None = None, chooser_label: str = "Show"
) -> str:
    """The figures of `folder` in their index's order, with captions; per-choice ones behind a chooser."""
    if entries is None:
        entries = read_index(folder, index_name) if folder.is_dir() else None
    if entries is None:  # figures drawn by an older version, or by hand: every PNG, named by its file
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        return "\n".join(_img(p) for p in pngs)
    plain, choices = [], {}
    for e in entries:
        p = folder / e["file"]
        if not p.exists():
            continue
        if e.get("choice"):
            choices.setdefault(e["choice"], []).append(_img(p, e["caption"], e.get("width", "half")))
        else:
            plain.append(_img(p, e["caption"], e.get("width", "half")))
    out = []
    if choices:
        names = list(choices)
        opts = "".join(f'<option value="{i}">{html.escape(n)}</option>' for i, n in enumerate(names))
        divs = "".join(
            f'<div class="choice" data-choice="{i}"'
            + ("" if i == 0 else ' style="display:none"')
            + ">"
            + "\n".join(figs)
            + "</div>"
            for i, figs in enumerate(choices.values())
        )
        out.append(
            f'<div class="figset"><div class="chooser"><label>{html.escape(chooser_label)}: '
            f'<select onchange="{CHOOSE_JS}">{opts}</select></label> '
            f'<span class="note">({len(names)} drawn, largest layers first)</span></div>{divs}</div>'
        )
    return "\n".join(out + plain)


def _section(kind: str, unit: str, title: str, body: str) -> tuple[str, str, str]:
    sid = f"{kind}-{slug(unit)}" if unit else kind
    return (
        sid,
        title,
        (f'<section id="{sid}" class="section-{kind}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'),
    )


def _missing(what: str) -> str:
    return f'<p class="note">{html.escape(what)} not present in this run.</p>'


# --------------------------------------------------------------------------------------------
# Headline and provenance


def _headline_section(root: Path, units: list[Path]) -> tuple[str, str, str]:
    groups: dict[str, list[str]] = {}
    for u in units:
        groups.setdefault(u.name if u != root else root.name, []).extend(unit_headline(u))
    for wl, items in compare_headline(root).items():
        groups.setdefault(wl, []).extend(items)
    body = "".join(f"<li><b>{html.escape(wl)}</b><ul>" + "".join(f"<li>{i}</li>" for i in items)
                   + "</ul></li>" for wl, items in groups.items() if items)
    body = f'<div class="headline"><ul>{body}</ul></div>' if body else _missing("Results to summarize")
    return _section("summary", "", "Headline", body)


def _provenance_section(root: Path) -> tuple[str, str, str]:
    p = prov.read(root)
    note = ""
    if p is None:
        note = (
            '<p class="note">The run did not record its provenance (gradstats demo does); below is the '
            "environment this report was written in.</p>"
        )
        p = prov.collect(command=prov.command_line())
    rows = [("command", f"<code>{html.escape(p.get('command', ''))}</code>")]
    if "commit" in p:
        rows.append(
            ("commit", html.escape(p["commit"]) + (" (with uncommitted changes)" if p.get("dirty") else ""))
        )
    rows.append(("run", html.escape(f"{p.get('started_utc', '')} to {p.get('finished_utc', '')} UTC")))
    if "seeds" in p:
        rows.append(("seeds", html.escape(json.dumps(p["seeds"]))))
    rows.append(("versions", html.escape(", ".join(f"{k} {v}" for k, v in p.get("versions", {}).items()))))
    rows.append(("machine", html.escape(", ".join(f"{k}: {v}" for k, v in p.get("machine", {}).items()))))
    if "seconds" in p:
        rows.append(
            (
                "wall time per stage",
                html.escape(
                    ", ".join(f"{k} {v:.1f} s" for k, v in p["seconds"].items())
                    + f"; total {p.get('wall_s', 0):.1f} s"
                ),
            )
        )
    if "config" in p:
        rows.append(("settings", html.escape(", ".join(f"{k}={v}" for k, v in p["config"].items()))))
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return _section(
        "provenance",
        "",
        "How this was obtained",
        note + f'<div class="scroll"><table class="prov">{table}</table></div>',
    )


# --------------------------------------------------------------------------------------------
# Per-workload sections


def _unit_sections(unit: Path, name: str) -> list[tuple[str, str, str]]:
    out = []
    summary = None
    fits, bits, rd = (read_table(unit / f) for f in DATA_FILES)
    absent = [f for f, t in zip(DATA_FILES, (fits, bits, rd), strict=True) if t is None or not len(t)]
    if capture_dir(unit) is not None:
        from captures import open_capture

        cap = open_capture(capture_dir(unit))
        summary = cap.summary()
        m = cap.manifest
        meta = {
            k: m[k]
            for k in ("model", "seed", "device", "world_size", "torch_version", "every", "sample")
            if k in m
        }
        info = ", ".join(f"<b>{html.escape(k)}</b> {html.escape(str(v))}" for k, v in meta.items())
        body = (
            f"<p>{info}; <b>steps</b> {html.escape(str(cap.steps))}; <b>ranks</b> "
            f"{html.escape(str(cap.ranks))}.</p>" + _table(summary)
        )
    else:
        body = _missing("A capture")
    if absent:
        body += _missing(", ".join(absent))
    out.append(_section("capture", name, f"{name}: capture", body))

    if fits is not None and len(fits):
        body = (
            "<p>Per layer: the best family by BIC (share of steps where it won), the median GenNorm "
            "&beta; (2 = Normal, 1 = Laplace) and the zero-inflated fit's &beta; and fraction of exact zeros "
            "&pi;; tail errors log<sub>10</sub>(model / empirical P(|X-loc| &gt; t<sub>p</sub>)) at "
            "p = 1e-2, "
            "1e-3, 1e-4 for the best family, and the mean absolute value over the resolved p for each "
            "family (blank where the sample is too small). <i>GenNorm flags</i> names a fit at its "
            "&beta; bound or one facing an atom of exact zeros, where the zero-inflated &beta; is the "
            "shape to read.</p>" + _table(fit_table(fits))
        )
        out.append(_section("fits", name, f"{name}: distribution fits", body))

    figs = _figures(unit / "figures", INDEX, chooser_label="Layer and step")
    if figs:
        out.append(_section("figures", name, f"{name}: figures", figs))

    if bits is not None and len(bits):
        body = (
            "<p>Achieved bits per entry (payload + side information of the model and the quantizer) per "
            "layer, averaged over steps: the entropy, the best model / coder and its ratio to bf16 "
            f"({BF16_BITS:g} bits per entry) first, then every model / coder pair.</p>"
            + _table(bits_table(bits, summary))
        )
        out.append(_section("bits", name, f"{name}: bits per entry", body))

    if rd is not None and len(rd):
        from analysis.rate_distortion import aggregate_rd

        q, c = rd_tables(aggregate_rd(rd))
        steps = sorted(set(rd["step"])) if "step" in rd.columns else []
        on = f" (step {', '.join(map(str, steps))})" if steps else ""
        body = (
            f"<p>Pooled over layers{on}: bits per entry = total bits / entries, relative error = "
            "||x - x&#770;|| / ||x||. A uniform quantizer with step c &times; RMS(x), coded under each "
            "probability model (side information included), one row per step c:</p>"
            + _table(q)
            + "<p>The compressors at typical settings, exact wire bits:</p>"
            + _table(c)
        )
        out.append(_section("rate-distortion", name, f"{name}: rate-distortion", body))
    return out


def _compare_setup(summ: pd.DataFrame) -> str:
    """One paragraph: workload, workers, steps, seeds, target rule and the baseline of the comparison."""
    first = summ.iloc[0]
    base = str(first["baseline"]) if "baseline" in summ else "bf16"
    metric = str(first["metric_name"]) if "metric_name" in summ else "metric"
    parts = []
    for col, fmt in (
        ("workload", "workload {}"),
        ("workers", "{} workers"),
        ("steps", "{} steps each"),
        ("backend", "backend {}"),
    ):
        if col in summ:
            parts.append(fmt.format(int(first[col]) if col in ("workers", "steps") else first[col]))
    if "seed_list" in summ:
        parts.append(f"seeds {first['seed_list']}")
    if "eval_every" in summ:
        parts.append(f"evaluated every {int(first['eval_every'])} steps")
    lower = metric == "loss"
    target = f" Target {metric}: {float(first['target']):.4g}" if "target" in summ else ""
    return (
        f"<p>{html.escape(', '.join(parts))}.{html.escape(target)} ({'105' if lower else '95'}% of the "
        f"{html.escape(base)} baseline's final {html.escape(metric)}, averaged over seeds, unless set); "
        f"<i>steps to target</i> is the first evaluated step at or past it (mean over the seeds that got "
        f"there), <i>{NOT_REACHED}</i> when none did. Each method runs with its own optimizer and "
        "learning rate (<i>optimizer</i>, <i>lr</i> in the run details): the rule of its reference "
        "implementation, e.g. local Nesterov momentum for gossip methods, momentum before the sign for "
        "Signum.</p>"
    )


def _inputs_section(root: Path) -> tuple[str, str, str]:
    """What PowerSGD / Signum-MV / PowerGossip put through their compressors (`method_inputs.parquet`)."""
    df = read_table(root / "method_inputs.parquet")
    cols = {"method": "method", "input": "what it compresses", "step": "step", "entries": "entries",
            "sent_bits_per_entry": "sent (bits/entry)", "gennorm_beta_median": "ZI-GenNorm beta (median)",
            "beta_rank_min": "beta min over workers", "beta_rank_max": "beta max over workers",
            "coded_parametric_bits_per_entry": "coded, best parametric", "parametric": "codebook",
            "coded_histogram_bits_per_entry": "coded, histogram",
            "lossless_bf16_bits_per_entry": "lossless bf16"}
    show = df[[c for c in cols if c in df.columns]].rename(columns=cols)
    body = ("<p>Recorded during training with <code>train(..., capture=)</code>, one capture rank per "
            "worker: the compressor input (PowerSGD's matrix M with its error feedback, Signum's momentum "
            "before the sign) or, for gossip, the model difference x<sub>i</sub> - x<sub>j</sub> sent to a "
            "neighbour. <i>sent</i> is what the method puts on the wire per entry of the model; the coded "
            "columns are what an entropy-coded version of the same input would need (uniform quantizer at "
            "c = 0.5 x RMS, ANS, side information included) and the lossless plane codec of its bf16 "
            "values. Compare them knowing the two are not the same reconstruction: the method's own "
            "error is in the comparison section.</p>" + _table(show))
    return _section("inputs", "", "What the methods compress", body)


def _compare_section(root: Path) -> tuple[str, str, str]:
    summ = read_table(root / "compare.parquet")
    times = read_table(root / "step_time.parquet")
    codec = read_table(root / "codec.parquet")
    net = root / "network.json"
    desc = json.loads(net.read_text())["model"] if net.exists() else ""
    entries = read_index(root / "figures", COMPARE_INDEX) if (root / "figures").is_dir() else None
    body = [
        f"<p>{html.escape(desc)}. Bits are payload per worker per step. Codec time is measured in "
        "isolation: one worker, one thread, warm, median over steps (the simulator's in-run timers, "
        "kept as <i>compress_in_run_s</i>, mostly measure the W worker threads contending for this "
        "machine's cores). Compute is one worker's forward + backward, measured; communication is "
        "modelled. Step times let communication overlap the backward pass where the method allows "
        "it. Projections scale bits, codec and compute per entry from the largest measured layer to "
        "the named parameter count.</p>"
    ]
    groups = list(summ.groupby("workload", sort=False)) if "workload" in summ else [("", summ)]
    multi, first_wl = len(groups) > 1, groups[0][0]
    for wl, s in groups:
        st = times[times["workload"] == wl] if times is not None and "workload" in times else times
        body.append(f"<h3>{html.escape(str(wl) or 'Comparison')}</h3>" + _compare_setup(s))
        body.append(
            "<p>Final metric as mean &plusmn; std [min, max] over seeds; step times modelled at 1, 10 "
            "and 100 Gbit/s:</p>" + _table(compare_display(s, st))
        )
        if st is not None and len(st):
            body.append(
                "<p>Modelled step-time speedup over bf16 (above 1: faster):</p>" + _table(speedup_table(st))
            )
        if entries is not None:
            mine = [e for e in entries if not multi or e["file"].endswith(f"_{slug(wl)}.png")]
            body.append(_figures(root / "figures", COMPARE_INDEX, entries=mine))
        elif wl == first_wl:  # figures without an index: every PNG once
            body.append(_figures(root / "figures", COMPARE_INDEX))
        c = codec[codec["workload"] == wl] if codec is not None and "workload" in codec else codec
        if c is not None and len(c):
            body.append(
                "<p>Codec time (compress + decompress) measured in isolation per layer size: the "
                "workload's own parameters and synthetic layers (Laplace gradients):</p>"
                + _table(codec_size_table(c))
            )
        body.append("<p>Run details:</p>" + _table(run_details(s)))
        body.append(
            "<details><summary>Every summary column</summary>"
            + _table(compare_table(s), digits=4)
            + "</details>"
        )
    return _section("compare", "", "Compressor comparison", "\n".join(body))


def write_report(
    run_dir: str | Path,
    figures: bool = True,
    title: str | None = None,
    figure_layers: int = 3,
    figure_steps: int = 2,
    progress: Progress = False,
) -> Path:
    """Write `run_dir/report.html` from what the run directory holds and return its path.

    figures=True draws the figures the data supports first (into each unit's `figures/`), with the
    per-layer figures for the `figure_layers` largest layers at up to `figure_steps` steps.
    `progress` (`captures.progress`): a bar over the units whose figures are drawn.
    """
    root = Path(run_dir)
    units = find_units(root)
    has_compare = (root / "compare.parquet").exists()
    if not units and not has_compare:
        raise ValueError(f"{root} holds no capture/, fits, bits or compare results to report on")
    if figures:
        bar = open_bar(progress, total=len(units) + int(has_compare), desc="report figures", unit="unit")
        for u in units:
            bar.set_postfix_str(u.name)
            try:
                write_figures(u, max_layers=figure_layers, max_steps=figure_steps)
            except (ValueError, KeyError) as exc:  # report what is there even if one figure cannot be drawn
                warnings.warn(f"figures for {u}: {exc}", stacklevel=2)
            bar.update(1)
        if has_compare:
            bar.set_postfix_str("compare")
            write_compare_figures(root)
            bar.update(1)
        bar.close()

    sections = [_headline_section(root, units), _provenance_section(root)]
    unit_sections = {u: _unit_sections(u, u.name if u != root else root.name) for u in units}
    for parts in unit_sections.values():
        sections += parts
    if has_compare:
        sections.append(_compare_section(root))
    has_inputs = (root / "method_inputs.parquet").exists()
    if has_inputs:
        sections.append(_inputs_section(root))

    head = title or f"gradstats report: {root.name}"
    link = lambda sid, text: f'<a href="#{sid}">{html.escape(text)}</a>'  # noqa: E731
    nav = [link("summary", "headline") + link("provenance", "provenance")]
    for u, parts in unit_sections.items():
        name = u.name if u != root else root.name
        nav.append(
            f"<b>{html.escape(name)}</b>: " + "".join(link(sid, t.split(": ", 1)[-1]) for sid, t, _ in parts)
        )
    if has_compare:
        nav.append(link("compare", "compressor comparison"))
    if has_inputs:
        nav.append(link("inputs", "what the methods compress"))
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(head)}</title><style>{CSS}</style></head>\n<body>\n"
        f"<h1>{html.escape(head)}</h1>\n<nav>"
        + "".join(f"<div>{n}</div>" for n in nav)
        + "</nav>\n"
        + "\n".join(s for _, _, s in sections)
        + "\n</body></html>\n"
    )
    path = root / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
