"""The headline of a report: what the run found, per workload, in a few sentences (HTML fragments).

Coding: the whole-model bits per entry of the best parametric codebook and of the histogram oracle
against bf16's 16; fits: the family that wins on most layers; comparison: the method that reaches
the target soonest in modelled time at the stated network, and for the largest projected model
size the fastest step and the bandwidth below which compression pays (`crossover`). Every line
is computed from the run's tables, so new models or methods compete without a change here.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from analysis.run_dir import read_table
from analysis.tables import best_family, fmt_seconds, headline_bits, winner
from coders.wire import BF16_BITS


def unit_headline(unit: Path) -> list[str]:
    """Headline lines of one workload's coding and fits (HTML fragments)."""
    items = []
    fits, bits = read_table(unit / "fits.parquet"), read_table(unit / "bits.parquet")
    if bits is not None and len(bits):
        try:
            h = headline_bits(bits)
        except ValueError:
            h = None
        if h:
            parts = []
            if h["best"]:
                (mc, b) = h["best"]
                parts.append(f"best parametric codebook <b>{html.escape(mc)}</b>: <b>{b:.3f} bits/entry</b> "
                             f"({BF16_BITS / b:.2f}x fewer than bf16's {BF16_BITS:g})")
            if h["oracle"]:
                (mc, b) = h["oracle"]
                parts.append(f"histogram oracle {html.escape(mc)} {b:.3f} ({BF16_BITS / b:.2f}x)")
            parts.append(f"empirical entropy {h['entropy']:.3f}")
            q = f" [quantizer {html.escape(h['quantizer'])}, lossy]" if h["quantizer"] else ""
            items.append("whole model: " + "; ".join(parts) + q + ".")
    if fits is not None and len(fits):
        best = best_family(fits).reset_index()
        per_layer = best.groupby("layer")["family"].agg(lambda s: s.value_counts().index[0])
        top = per_layer.value_counts()
        items.append(f"fits: best family by BIC on most layers <b>{html.escape(str(top.index[0]))}</b> "
                     f"({int(top.iloc[0])} of {len(per_layer)} layers).")
    return items


def crossover(times: pd.DataFrame, baseline: str = "bf16") -> tuple[float, str, float] | None:
    """(highest bandwidth, method, speedup) at which some method's modelled step beats the baseline's."""
    faster = times[(times["method"] != baseline) & (times["speedup_vs_bf16"] > 1.0)]
    if faster.empty:
        return None
    bw = float(faster["bandwidth_gbps"].max())
    at = faster[faster["bandwidth_gbps"] == bw]
    best = at.loc[at["speedup_vs_bf16"].idxmax()]
    return bw, str(best["method"]), float(best["speedup_vs_bf16"])


def compare_headline(root: Path) -> dict[str, list[str]]:
    """Headline lines of the comparison per workload: the winner at the stated network, the projection."""
    summ = read_table(root / "compare.parquet")
    if summ is None or not len(summ):
        return {}
    times = read_table(root / "step_time.parquet")
    out: dict[str, list[str]] = {}
    groups = summ.groupby("workload", sort=False) if "workload" in summ else [(root.name, summ)]
    for wl, s in groups:
        items = out.setdefault(str(wl), [])
        first = s.iloc[0]
        baseline = str(first.get("baseline", "bf16"))
        net = f"{first['bandwidth_gbps']:g} Gbit/s, {first['latency_us']:g} us"
        w = winner(s)
        base = s[s["method"] == baseline]
        if w is None:
            items.append(f"comparison at {net}: no method reached the target in every seed.")
        else:
            vs = ""
            if len(base) and pd.notna(base["time_to_target_s"].iloc[0]) and w["method"] != baseline:
                t_b = base["time_to_target_s"].iloc[0]
                vs = f" vs {baseline}'s {fmt_seconds(t_b)} ({t_b / w['time_to_target_s']:.2f}x)"
            n = int(w["seeds"]) if "seeds" in w else 1
            metric = str(w.get("metric_name", "metric"))
            spread = f" ± {w['final_metric_std']:.3f} over {n} seeds" if n > 1 else ""
            items.append(f"comparison at {net}: fastest to the target ({metric} "
                         f"{'≤' if metric == 'loss' else '≥'} {w['target']:.3f}) is "
                         f"<b>{html.escape(w['method'])}</b>, {fmt_seconds(w['time_to_target_s'])} "
                         f"modelled{vs}; its final {metric} {w['final_metric']:.3f}{spread}.")
        if times is not None and len(times):
            t = times[times["workload"] == wl] if "workload" in times else times
            proj = t[t["model"].str.endswith("projection")]
            if len(proj):
                big = proj[proj["params"] == proj["params"].max()]
                size = html.escape(str(big["model"].iloc[0]).replace(" projection", ""))
                at = big[big["bandwidth_gbps"] == first["bandwidth_gbps"]]
                fast = at.loc[at["iter_overlap_s"].idxmin()] if len(at) else None
                text = f"projected to {size} parameters"
                if fast is not None:
                    text += (f", at {first['bandwidth_gbps']:g} Gbit/s the fastest step is "
                             f"<b>{html.escape(fast['method'])}</b> ({fmt_seconds(fast['iter_overlap_s'])}"
                             + (f", {fast['speedup_vs_bf16']:.2f}x {baseline})" if fast["method"] != baseline
                                else ")"))
                c = crossover(big, baseline)
                lo, hi = big["bandwidth_gbps"].min(), big["bandwidth_gbps"].max()
                text += (f"; no method beats {baseline} from {lo:g} to {hi:g} Gbit/s." if c is None else
                         f"; compression pays at {c[0]:g} Gbit/s and below ({html.escape(c[1])} "
                         f"{c[2]:.2f}x {baseline} at {c[0]:g} Gbit/s).")
                items.append(text)
    return out
