"""The report's tables (analysis.tables) carry the right numbers."""

import numpy as np
import pandas as pd
import pytest

from analysis.tables import WHOLE_MODEL, best_family, bits_table, fit_table, flag_names, headline


def test_fit_table_values(fits_frame, layers):
    t = fit_table(fits_frame).set_index("layer")
    assert list(t.index) == layers
    assert (t["best family"] == "gennorm").all() and (t["best share"] == 1.0).all()
    # beta = 0.6 + 0.1 i + 0.002 step over steps 0, 25, 50 -> median at step 25
    np.testing.assert_allclose(t["GenNorm beta"], [0.65 + 0.1 * i for i in range(len(layers))])
    f = fits_frame[fits_frame["layer"] == layers[0]]
    g = f[f["family"] == "gennorm"]  # the best family's tail errors, averaged over steps
    assert t.loc[layers[0], "tail 1e-03"] == pytest.approx(g["tail_log10_1e-03"].mean())
    n = f[f["family"] == "normal"]
    cols = ["tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04"]
    assert t.loc[layers[0], "|tail| normal"] == pytest.approx(np.abs(n[cols].to_numpy()).mean())


def test_best_family_from_name_or_bic(fits_frame):
    by_bool = best_family(fits_frame)
    by_name = best_family(fits_frame.assign(best="laplace"))
    by_bic = best_family(fits_frame.drop(columns=["best"]))
    assert (by_bool == "gennorm").all() and (by_name == "laplace").all() and (by_bic == "gennorm").all()


def test_bits_table_weighted_total(bits_frame, layers):
    b = bits_frame.copy()
    b["n"] = b["layer"].map(dict(zip(layers, [100, 10, 1000, 10], strict=True)))
    t = bits_table(b).set_index("layer")
    w = np.array([100, 10, 1000, 10], float)
    ent = np.array([3.0 + 0.25 * i for i in range(4)])
    assert t.loc[WHOLE_MODEL, "entropy"] == pytest.approx((w * ent).sum() / w.sum())
    assert t.loc[layers[0], "gennorm/ans"] == pytest.approx(3.02)
    assert t.loc[layers[0], "best"] == "gennorm/ans"
    assert t.loc[layers[0], "vs bf16"] == pytest.approx(16 / 3.02)
    h = headline(None, b).set_index("layer")
    assert h.loc[layers[1], "GenNorm-ANS vs bf16"] == pytest.approx(16 / 3.27)
    assert WHOLE_MODEL not in h.index


def test_bits_table_prefers_code_capture_totals(bits_frame):
    # code_capture's TOTAL rows (bits summed over layers) and total_bits_per_entry (quantizer side
    # information included) take precedence over the per-layer average
    b = bits_frame.assign(total_bits_per_entry=bits_frame["bits_per_entry"] + 0.5)
    total = b.groupby(["step", "model", "coder"], as_index=False).first().assign(
        layer="TOTAL", total_bits_per_entry=2.0, entropy=1.5)
    t = bits_table(pd.concat([b, total], ignore_index=True)).set_index("layer")
    assert "TOTAL" not in t.index
    assert t.loc[WHOLE_MODEL, "gennorm/ans"] == pytest.approx(2.0)
    assert t.loc[WHOLE_MODEL, "entropy"] == pytest.approx(1.5)
    assert t.iloc[0]["gennorm/ans"] == pytest.approx(3.52)


def test_fit_table_names_gennorm_flags(fits_frame, layers):
    f = fits_frame.copy()
    at = (f["layer"] == layers[1]) & (f["family"] == "gennorm")
    f.loc[at & (f["step"] == 0), "flags"] = "beta_at_lower_bound: beta hit 0.05; ties_at_loc: 9 entries (1%)"
    f.loc[at & (f["step"] == 25), "flags"] = "ties_at_loc: 12 entries (2%)"
    f.loc[(f["layer"] == layers[1]) & (f["family"] == "normal"), "flags"] = "small_sample: n=10 < 30"
    t = fit_table(f).set_index("layer")
    # the GenNorm rows' flag names over steps, once each; other families' flags are not GenNorm's
    assert t.loc[layers[1], "GenNorm flags"] == "beta_at_lower_bound, ties_at_loc"
    assert t.loc[layers[0], "GenNorm flags"] == ""
    assert "GenNorm flags" in headline(f, None).columns
    assert flag_names(pd.Series([None, "", "a: x;b: y", "a: z"])) == "a, b"
    # what gradstats.fit writes: explanations with ";" and "(try t)" inside
    real = ("small_sample: n=16 < 30, estimates are unreliable; beta_at_lower_bound: beta hit 0.05 (tails "
            "heavier than GenNorm can follow; try t); ties_at_loc: 2 entries (12.5%) equal the loc 0 "
            "exactly; a continuous density cannot describe that atom (try zi-gennorm)")
    assert flag_names(pd.Series([real])) == "beta_at_lower_bound, small_sample, ties_at_loc"
