"""Model selection by total bits (minimum description length) over the codebooks of one tensor.

Per coder, among the models asked for (histogram included) the codebook that minimizes payload +
side information (Rissanen 1978: the model is worth its description) is the `best` row; the best
*parametric* one (a family codebook; the histogram stands in where no family coded the tensor) is
the `best-parametric` row, the headline. Both copy the chosen row and name it in `selected`.

A family codebook whose fit is degenerate (a shape or the scale on its bound, a spike, a tiny
sample: `degenerate`, the reason in `notes`) competes like any other: its bits, side information
included, are what a decoder receiving its bf16 parameters pays, so leaving it out would put the
headline above a family row it contains (ResNet-18's fc.weight: a spike GenNorm at 2.14 bits per
entry, the next family 2.49). The copied row keeps `degenerate` and the notes, and the totals say
whether any layer's pick was degenerate. Totals over layers sum these rows like any other model, so
`code_capture`'s TOTAL rows of `best-parametric` are the headline and `selected` counts the choices.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

TOTAL = "TOTAL"
"""The layer name of `code_capture`'s whole-model rows."""
BEST = "best"
BEST_PARAMETRIC = "best-parametric"
SELECTIONS = (BEST, BEST_PARAMETRIC)
NOT_CODEBOOKS = ("symbols", "raw-float32", "raw-bf16")
"""Rows that are no codebook (zstd on the symbol bytes or on the raw values)."""


def selection_rows(rows: list[dict]) -> list[dict]:
    """The `best` and `best-parametric` rows (one each per entropy coder) of one tensor's rows."""
    out: list[dict] = []
    if not any(r.get("n") for r in rows):
        return out  # an empty tensor has nothing to select
    coders = list(dict.fromkeys(r["coder"] for r in rows if r["model"] not in NOT_CODEBOOKS))
    for coder in coders:
        cands = [r for r in rows if r["coder"] == coder and r["model"] not in NOT_CODEBOOKS
                 and not r.get("error") and math.isfinite(r.get("bits_per_entry", math.nan))]
        parametric = [r for r in cands if r.get("fit")]
        histogram = [r for r in cands if not r.get("fit")]
        for label, pool in ((BEST, cands), (BEST_PARAMETRIC, parametric or histogram)):
            if pool:
                pick = min(pool, key=lambda r: r["bits_per_entry"])
                out.append({**pick, "model": label, "selected": pick["model"]})
            else:
                template = next(r for r in rows if r["coder"] == coder)
                out.append({**{k: template[k] for k in ("coder", "quantizer", "n", "entropy")},
                            "model": label, "selected": "", "error": "no model coded this tensor",
                            "notes": ""})
    return out


def selected_counts(selected: pd.Series) -> str:
    """'gennorm x12, histogram x2': which models a total's layers selected, most frequent first."""
    c = Counter(s for s in selected.fillna("") if s)
    return ", ".join(f"{k} x{v}" for k, v in c.most_common())


def codebook_headline(df: pd.DataFrame, coder: str = "ans") -> pd.DataFrame:
    """Per step: the best parametric codebook beside the histogram oracle, whole model.

    Reads `code_capture`'s TOTAL rows of `best-parametric` and `histogram` for `coder`: columns
    step, coder, parametric (the selected models), parametric_bits_per_entry,
    parametric_total_bits_per_entry (with the quantizer's side bits), parametric_ratio_vs_bf16,
    parametric_gap_entropy, histogram_bits_per_entry, histogram_total_bits_per_entry,
    histogram_ratio_vs_bf16, histogram_gap_entropy, entropy.
    """
    tot = df[(df["layer"] == TOTAL) & (df["coder"] == coder)]
    par = tot[tot["model"] == BEST_PARAMETRIC].set_index("step")
    hist = tot[tot["model"] == "histogram"].set_index("step")
    if par.empty:
        raise ValueError(f"codebook_headline: no {BEST_PARAMETRIC!r} TOTAL rows for coder {coder!r} "
                         "(code_capture with select=True and at least one family model)")
    out = pd.DataFrame({"step": par.index, "coder": coder, "parametric": par["selected"].to_numpy()})
    cols = ("bits_per_entry", "total_bits_per_entry", "ratio_vs_bf16", "gap_entropy")
    for col in cols:
        out[f"parametric_{col}"] = par[col].to_numpy()
    for col in cols:
        out[f"histogram_{col}"] = hist[col].reindex(par.index).to_numpy() if not hist.empty else math.nan
    out["entropy"] = par["entropy"].to_numpy()
    return out.reset_index(drop=True)
