"""Model selection by total bits: best rows, the non-degenerate headline, totals and the headline table."""

import numpy as np
import pytest

from coders import bits_per_entry, code_capture
from coders.models import is_degenerate
from coders.quantizers import UniformQuantizer
from coders.report import TOTAL
from coders.selection import BEST, BEST_PARAMETRIC, codebook_headline

MODELS = ["histogram", "normal", "laplace", "gennorm", "zi-gennorm", "gennorm:values"]


def _codebook_rows(df, coder):
    return df[(df["coder"] == coder) & ~df["model"].isin([BEST, BEST_PARAMETRIC, "symbols"])]


def test_best_is_the_minimum_and_best_parametric_the_minimum_family():
    fam = pytest.importorskip("gradstats.families")
    x = fam.GenNorm(beta=0.8, scale=1.0).sample(30_000, rng=1)
    x[np.random.default_rng(2).random(x.size) < 0.4] = 0.0  # dead units: the continuous fit degenerates
    df = bits_per_entry(x, UniformQuantizer(scale_mult=0.5), models=MODELS, coders=["ans", "huffman"],
                        select=True)
    for coder in ("ans", "huffman"):
        rows = _codebook_rows(df, coder).set_index("model")
        best = df[(df["model"] == BEST) & (df["coder"] == coder)].iloc[0]
        assert best["bits_per_entry"] == rows["bits_per_entry"].min()
        assert best["selected"] == rows["bits_per_entry"].idxmin()
        par = df[(df["model"] == BEST_PARAMETRIC) & (df["coder"] == coder)].iloc[0]
        families = rows[rows["fit"] != ""]
        assert par["selected"] == families["bits_per_entry"].idxmin()
        # never above a family row it could have chosen, degenerate or not
        assert par["bits_per_entry"] == families["bits_per_entry"].min()
        assert par["degenerate"] == families.loc[par["selected"], "degenerate"]
        assert rows.loc["gennorm:values", "degenerate"]  # beta on its bound: flagged
        assert "beta_at_lower_bound" in rows.loc["gennorm:values", "notes"]
        assert rows.loc["gennorm", "fit"] == "codelength" and rows.loc["gennorm:values", "fit"] == "values"
        assert rows.loc["histogram", "fit"] == ""
        # the side information of each codebook is there to compare: counts cost real bits
        assert rows.loc["histogram", "side_bits"] > rows.loc["gennorm", "side_bits"] >= 48


def test_a_degenerate_fit_that_codes_shortest_is_the_headline_and_keeps_its_flags():
    x = np.random.default_rng(3).uniform(-1, 1, 40_000)  # GenNorm's beta runs to its upper bound
    df = bits_per_entry(x, UniformQuantizer(step=0.05), models=["normal", "gennorm"], coders=["ans"],
                        select=True)
    by = df.set_index("model")
    assert is_degenerate(by.loc["gennorm", "notes"]) and by.loc["gennorm", "degenerate"]
    assert by.loc["gennorm", "bits_per_entry"] < by.loc["normal", "bits_per_entry"]
    assert by.loc[BEST, "selected"] == "gennorm" and by.loc[BEST_PARAMETRIC, "selected"] == "gennorm"
    par = by.loc[BEST_PARAMETRIC]
    assert par["degenerate"] and par["notes"] == by.loc["gennorm", "notes"]
    assert par["bits_per_entry"] == by.loc["gennorm", "bits_per_entry"]


def test_a_tiny_layer_keeps_its_shortest_family_flagged_and_a_constant_one_falls_back_to_the_histogram():
    x = np.random.default_rng(4).laplace(size=10)
    df = bits_per_entry(x, UniformQuantizer(scale_mult=0.5), models=["histogram", "laplace", "gennorm"],
                        coders=["ans"], select=True)
    by = df.set_index("model")
    assert "small_sample" in by.loc["gennorm", "notes"] and "small_sample" in by.loc["laplace", "notes"]
    fams = by.loc[["laplace", "gennorm"], "bits_per_entry"]
    assert by.loc[BEST_PARAMETRIC, "selected"] == fams.idxmin() and by.loc[BEST_PARAMETRIC, "degenerate"]
    # no family can code a constant tensor (one distinct value): the histogram stands in
    df = bits_per_entry(np.full(50, 0.25), UniformQuantizer(step=0.1), models=["histogram", "laplace"],
                        coders=["ans"], select=True)
    by = df.set_index("model")
    assert by.loc["laplace", "error"] and by.loc[BEST_PARAMETRIC, "selected"] == "histogram"


def test_totals_and_headline_read_the_selected_rows(tmp_path):
    captures = pytest.importorskip("captures")
    rng = np.random.default_rng(5)
    grads = {s: {"w": rng.laplace(size=(64, 200)).astype(np.float32) * (1 + s),
                 "b": rng.laplace(size=8).astype(np.float32)} for s in (0, 1)}
    cap = captures.write_capture(tmp_path / "cap", grads)
    df = code_capture(cap, models=["histogram", "laplace", "gennorm"], coders=["ans"])
    tot = df[(df["layer"] == TOTAL) & (df["model"] == BEST_PARAMETRIC)].set_index("step")
    layers = df[(df["layer"] != TOTAL) & (df["model"] == BEST_PARAMETRIC)]
    for step, g in layers.groupby("step"):
        assert tot.loc[step, "total_bits"] == g["total_bits"].sum()
        counts = dict(part.split(" x") for part in tot.loc[step, "selected"].split(", "))
        assert sum(int(v) for v in counts.values()) == len(g) == 2
        assert counts.get("laplace") == "2"  # the 8-entry bias too: flagged, but its bits are fewest
        bias = g.set_index("layer").loc["b"]
        assert bias["degenerate"] and "small_sample" in bias["notes"]
        assert bool(tot.loc[step, "degenerate"])  # a total says when a layer's pick is degenerate
    head = codebook_headline(df, coder="ans")
    assert list(head["step"]) == [0, 1]
    np.testing.assert_allclose(head["parametric_bits_per_entry"], tot["bits_per_entry"])
    hist = df[(df["layer"] == TOTAL) & (df["model"] == "histogram")].set_index("step")
    np.testing.assert_allclose(head["histogram_bits_per_entry"], hist["bits_per_entry"])
    np.testing.assert_allclose(head["parametric_gap_entropy"], tot["bits_per_entry"] / tot["entropy"] - 1)
    with pytest.raises(ValueError, match="best-parametric"):
        codebook_headline(df, coder="huffman")
